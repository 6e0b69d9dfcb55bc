"""The subscription trie against a plain recursive matcher."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from minibroker.core.trie import SubscriptionTrie
from minibroker.errors import InvalidName

Words = tuple[str, ...]

# --- the reference: the definition of a match, written as plainly as possible --


@cache
def reference_matches(pattern: Words, topic: Words) -> bool:
    """Does ``pattern`` match ``topic``? Straight from the definition of * and #."""
    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == "#":  # zero words, or one word and keep the #
        return reference_matches(rest, topic) or (
            bool(topic) and reference_matches(pattern, topic[1:])
        )
    if not topic:
        return False
    if head == "*" or head == topic[0]:
        return reference_matches(rest, topic[1:])
    return False


def reference_match(entries: dict[tuple[Words, int], None], topic: Words) -> tuple[int, ...]:
    """What the trie must answer: matching values in insertion order, each once."""
    matching = (value for pattern, value in entries if reference_matches(pattern, topic))
    return tuple(dict.fromkeys(matching))


def distinct_prefixes(entries: dict[tuple[Words, int], None]) -> int:
    """Nodes a pruned trie needs: one per distinct non-empty pattern prefix."""
    return len({pattern[:i] for pattern, _ in entries for i in range(1, len(pattern) + 1)})


# A tiny alphabet, so that patterns and topics collide often.
topic_words = st.lists(st.sampled_from("abc"), min_size=1, max_size=5).map(tuple)
pattern_words = st.lists(st.sampled_from(["a", "b", "c", "*", "#"]), min_size=1, max_size=5).map(
    tuple
)
values = st.integers(min_value=0, max_value=5)


# --- examples from the rules --------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("a.b", ["a.b"], ["a", "a.b.c", "b.a"]),
        ("a.*", ["a.b", "a.x"], ["a", "a.b.c", "b.a"]),
        ("*", ["a", "zzz"], ["a.b"]),
        ("#", ["a", "a.b", "a.b.c.d"], []),
        ("a.#", ["a", "a.b", "a.b.c"], ["b", "b.a"]),
        ("#.b", ["b", "a.b", "x.y.b"], ["b.a", "a"]),
        ("a.#.b", ["a.b", "a.x.b", "a.x.y.b"], ["a", "a.x", "b", "x.a.b"]),
        ("a.#.#.b", ["a.b", "a.x.b", "a.x.y.b"], ["a.x"]),
        ("*.#", ["a", "a.b"], []),
        ("#.*", ["a", "a.b"], []),
        ("*.*.#", ["a.b", "a.b.c"], ["a"]),
        ("a.*.#.c", ["a.b.c", "a.b.x.c"], ["a.c", "a.b"]),
    ],
)
def test_examples(pattern: str, matching: list[str], not_matching: list[str]) -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    trie.insert(pattern, "sub")
    for topic in matching:
        assert trie.match(topic) == ("sub",), topic
    for topic in not_matching:
        assert trie.match(topic) == (), topic


def test_value_on_many_paths_is_reported_once() -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    trie.insert("a.#.#.b", "s1")
    trie.insert("#.#.#", "s2")
    assert trie.match("a.x.y.b") == ("s1", "s2")
    assert trie.match("a.b.b.b") == ("s1", "s2")


def test_value_under_two_matching_patterns_is_reported_once() -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    trie.insert("orders.*", "q")
    trie.insert("#.created", "q")
    assert trie.match("orders.created") == ("q",)
    assert len(trie) == 2


def test_results_come_in_insertion_order() -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    trie.insert("a.b", "first")
    trie.insert("#", "second")
    trie.insert("a.*", "third")
    trie.insert("a.b", "fourth")
    assert trie.match("a.b") == ("first", "second", "third", "fourth")
    # Removing and inserting again moves a value to the end...
    trie.remove("a.b", "first")
    trie.insert("a.b", "first")
    assert trie.match("a.b") == ("second", "third", "fourth", "first")
    # ...while inserting a stored pair again changes nothing.
    assert trie.insert("#", "second") is False
    assert trie.match("a.b") == ("second", "third", "fourth", "first")


def test_patterns_as_words_or_strings_are_the_same() -> None:
    trie: SubscriptionTrie[int] = SubscriptionTrie()
    assert trie.insert(("a", "*"), 1) is True
    assert trie.insert("a.*", 1) is False
    assert trie.match(("a", "b")) == (1,)
    assert trie.match("a.b") == (1,)
    assert trie.remove("a.*", 1) is True
    assert trie.remove(("a", "*"), 1) is False


@pytest.mark.parametrize("bad", ["", "a..b", "a*", ("a", "b.c"), ("a", ""), (), ("a*",)])
def test_insert_rejects_invalid_patterns(bad: str | Words) -> None:
    trie: SubscriptionTrie[int] = SubscriptionTrie()
    with pytest.raises(InvalidName):
        trie.insert(bad, 1)
    assert trie.is_empty
    assert trie.node_count == 1


def test_match_validates_topic_strings() -> None:
    trie: SubscriptionTrie[int] = SubscriptionTrie()
    trie.insert("#", 1)
    for bad in ["", "a.*", "a..b", "a b"]:
        with pytest.raises(InvalidName):
            trie.match(bad)
    assert trie.cached_topics == 0  # failures are not cached


def test_deep_hash_chains_stay_fast() -> None:
    """32 #s against 32 words: exponentially many paths, one visit per (node, word)."""
    trie: SubscriptionTrie[int] = SubscriptionTrie(cache_size=0)
    trie.insert(("#",) * 32, 1)
    trie.insert(("#",) * 31 + ("z",), 2)
    assert trie.match(("a",) * 32) == (1,)
    assert trie.match(("a",) * 31 + ("z",)) == (1, 2)


def test_no_match_on_an_empty_trie() -> None:
    trie: SubscriptionTrie[int] = SubscriptionTrie()
    assert trie.match("a.b") == ()
    assert trie.is_empty
    assert len(trie) == 0
    assert trie.node_count == 1


# --- pruning --------------------------------------------------------------------


def test_pruning_returns_to_the_root() -> None:
    trie: SubscriptionTrie[int] = SubscriptionTrie()
    patterns = ["a.b.c", "a.b", "a.*.c", "a.#", "#", "#.c", "*.*.*"]
    for i, pattern in enumerate(patterns):
        trie.insert(pattern, i)
    assert trie.node_count > 1
    # Removing a leaf keeps the shared prefix; removing a prefix keeps the leaf.
    trie.remove("a.b", 1)
    assert trie.match("a.b.c") == (0, 2, 3, 4, 5, 6)
    for i, pattern in enumerate(patterns):
        trie.remove(pattern, i)
    assert trie.is_empty
    assert trie.node_count == 1


def test_removing_something_absent_changes_nothing() -> None:
    trie: SubscriptionTrie[int] = SubscriptionTrie()
    trie.insert("a.b", 1)
    nodes = trie.node_count
    assert trie.remove("a.b", 2) is False
    assert trie.remove("a.c", 1) is False
    assert trie.remove("a.b.c", 1) is False
    assert trie.remove("a", 1) is False  # an inner node, no value there
    assert trie.node_count == nodes
    assert trie.match("a.b") == (1,)


# --- the match cache ------------------------------------------------------------


def test_cache_is_invalidated_by_insert_and_remove() -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    assert trie.match("a.b") == ()
    assert trie.match(("a", "b")) == ()
    assert trie.cached_topics == 2  # a string and a word tuple are separate keys
    trie.insert("a.*", "s")
    assert trie.cached_topics == 0
    assert trie.match("a.b") == ("s",)
    assert trie.match(("a", "b")) == ("s",)
    trie.remove("a.*", "s")
    assert trie.match("a.b") == ()
    assert trie.match(("a", "b")) == ()


def test_cache_is_kept_when_nothing_changes() -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    trie.insert("a.*", "s")
    first = trie.match("a.b")
    trie.insert("a.*", "s")  # already there
    trie.remove("x", "s")  # not there
    assert trie.cached_topics == 1
    assert trie.match("a.b") is first  # served from the cache


def test_cache_is_bounded() -> None:
    trie: SubscriptionTrie[int] = SubscriptionTrie(cache_size=4)
    trie.insert("#", 1)
    for i in range(50):
        assert trie.match(f"t{i}") == (1,)
        assert trie.cached_topics <= 4


def test_cache_can_be_turned_off() -> None:
    trie: SubscriptionTrie[int] = SubscriptionTrie(cache_size=0)
    trie.insert("#", 1)
    assert trie.match("a") == (1,)
    assert trie.cached_topics == 0
    with pytest.raises(ValueError):
        SubscriptionTrie(cache_size=-1)


# --- properties -------------------------------------------------------------------


@given(
    entries=st.lists(st.tuples(pattern_words, values), max_size=12),
    topics=st.lists(topic_words, min_size=1, max_size=5),
)
def test_match_equals_reference(entries: list[tuple[Words, int]], topics: list[Words]) -> None:
    trie: SubscriptionTrie[int] = SubscriptionTrie()
    reference: dict[tuple[Words, int], None] = {}
    for pattern, value in entries:
        assert trie.insert(pattern, value) is ((pattern, value) not in reference)
        reference[(pattern, value)] = None
    for topic in topics:
        expected = reference_match(reference, topic)
        assert trie.match(topic) == expected
        assert trie.match(".".join(topic)) == expected
    assert trie.node_count == 1 + distinct_prefixes(reference)


class TrieMachine(RuleBasedStateMachine):
    """Random inserts, removes and matches, checked against a dict of entries."""

    stored = Bundle("stored")

    def __init__(self) -> None:
        super().__init__()
        self.trie: SubscriptionTrie[int] = SubscriptionTrie(cache_size=8)
        # (pattern, value) -> None, in insertion order: what the trie should hold.
        self.reference: dict[tuple[Words, int], None] = {}

    @rule(target=stored, pattern=pattern_words, value=values)
    def insert(self, pattern: Words, value: int) -> tuple[Words, int]:
        added = self.trie.insert(pattern, value)
        assert added is ((pattern, value) not in self.reference)
        self.reference[(pattern, value)] = None
        return (pattern, value)

    @rule(entry=consumes(stored))
    def remove_stored(self, entry: tuple[Words, int]) -> None:
        # The bundle may hold an entry twice (inserted twice); only the first removes.
        expected = entry in self.reference
        assert self.trie.remove(*entry) is expected
        self.reference.pop(entry, None)

    @rule(pattern=pattern_words, value=values)
    def remove_any(self, pattern: Words, value: int) -> None:
        expected = (pattern, value) in self.reference
        assert self.trie.remove(pattern, value) is expected
        self.reference.pop((pattern, value), None)

    @rule(topic=topic_words, as_string=st.booleans())
    def match(self, topic: Words, as_string: bool) -> None:
        expected = reference_match(self.reference, topic)
        assert self.trie.match(".".join(topic) if as_string else topic) == expected

    @precondition(lambda self: bool(self.reference))
    @rule()
    def remove_everything(self) -> None:
        for pattern, value in list(self.reference):
            assert self.trie.remove(pattern, value)
        self.reference.clear()
        assert self.trie.node_count == 1

    @invariant()
    def sizes_agree(self) -> None:
        assert len(self.trie) == len(self.reference)
        assert self.trie.is_empty == (not self.reference)
        assert self.trie.node_count == 1 + distinct_prefixes(self.reference)
        assert self.trie.cached_topics <= 8

    @invariant()
    def entries_agree(self) -> None:
        assert list(self.trie.entries()) == list(self.reference)

    def teardown(self) -> None:
        for pattern, value in list(self.reference):
            assert self.trie.remove(pattern, value)
        assert self.trie.is_empty
        assert self.trie.node_count == 1


TrieMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_trie_machine = TrieMachine.TestCase
