"""The subscription trie: which subscriptions does a published topic reach?

Every publish asks this question, so the answer must not cost more as
subscriptions pile up. Scanning a list of patterns would: with 10,000
subscribers every publish would test 10,000 patterns. A trie instead walks one
level per word of the topic, so the cost depends on the topic's length and on
how many wildcard branches the walk meets, never on how many subscriptions
exist.

Shape (borrowed from the NATS server's ``sublist``)
----------------------------------------------------

Each pattern is stored as a path from the root, one node per word::

    root ─┬─ "orders" ─┬─ "created"   {s1}    s1: orders.created
          │            ├─ star        {s2}    s2: orders.*
          │            └─ hash        {s3}    s3: orders.#
          └─ hash ─────── "created"   {s4}    s4: #.created

A node keeps its literal children in a dict (one O(1) lookup per word, however
many siblings there are) and the two wildcards in dedicated pointers, ``star``
and ``hash``, so matching never has to look through the dict for them. The
values (subscriptions) live at the node where their pattern ends.

Matching ``#``
--------------

NATS's ``>`` may only end a pattern; RabbitMQ's ``#``, which we follow, may
stand anywhere and matches zero or more words. We match like a
non-deterministic automaton: keep the *set* of nodes reached after each word.
For the next word every node in the set moves to its literal child and its
``star`` child; a node reached through a ``hash`` pointer also stays where it
is (the ``#`` swallows the word); and whenever a node with a ``hash`` child
enters the set, that child enters too (the ``#`` swallows zero words). Because
the set holds each node once, patterns such as ``a.#.#.b`` that reach the
same node along many paths are visited once per word, not once per path, so
even ``#.#.#...`` stays linear in the topic length instead of exponential,
and each value is reported once.

Order of results
----------------

Each insertion gets a sequence number, and :meth:`SubscriptionTrie.match`
returns values in insertion order, each value at most once (a value inserted
under two patterns that both match is reported once, as RabbitMQ delivers a
message once to a queue bound by two matching patterns). Insertion order is
deterministic and gives the caller a fair starting point for round-robin
among a group's members.

Pruning
-------

When the last value leaves a node that has no children either, the node is
unlinked from its parent, and so on up the path. Without this, a broker whose
clients subscribe to ever new topics (``session.<uuid>.#``) would grow the
trie forever; with it the trie's size is set by the live subscriptions only.
:attr:`SubscriptionTrie.node_count` exposes the size as a metric.

Match cache
-----------

Real traffic repeats a small set of topics, so results are cached in a dict
``topic -> tuple of values``, keyed by the topic string or word tuple exactly as
passed to :meth:`~SubscriptionTrie.match`. A hit skips splitting and walking.
NATS updates cached entries one by one when a subscription changes; in Python
that costs a match per cached topic per subscribe, so we simply clear the
whole cache on every insert or remove that changes something (clearing also
drops references to removed values at once). The cache is bounded: when full
it is cleared, and hot topics refill it on their next publish.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from itertools import chain
from operator import itemgetter
from typing import Final, Generic, TypeVar

from minibroker.core.names import HASH, SEPARATOR, STAR, split_pattern, split_topic
from minibroker.errors import InvalidName

__all__ = ["DEFAULT_CACHE_SIZE", "SubscriptionTrie"]

T = TypeVar("T", bound=Hashable)

#: Topics whose match results are remembered (NATS uses 1024 too).
DEFAULT_CACHE_SIZE: Final = 1024

_by_sequence = itemgetter(1)


class _Node(Generic[T]):
    """One word position in the trie.

    ``values`` maps each value stored here to its insertion sequence number;
    a dict keeps them in insertion order and removes one in O(1).
    ``swallows`` is True for nodes reached through a ``hash`` pointer: such a
    node may consume any number of further words without moving.
    """

    __slots__ = ("children", "hash", "star", "swallows", "values")

    def __init__(self, *, swallows: bool = False) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.star: _Node[T] | None = None
        self.hash: _Node[T] | None = None
        self.swallows = swallows
        self.values: dict[T, int] = {}

    def is_unused(self) -> bool:
        """True when nothing is stored here or below: the node can be pruned."""
        return not self.values and not self.children and self.star is None and self.hash is None

    def child(self, word: str) -> _Node[T] | None:
        """The child for one pattern word (literal, ``*`` or ``#``), if any."""
        if word == STAR:
            return self.star
        if word == HASH:
            return self.hash
        return self.children.get(word)

    def add_child(self, word: str) -> _Node[T]:
        """Create and link the child for one pattern word (must not exist yet)."""
        node: _Node[T] = _Node(swallows=word == HASH)
        if word == STAR:
            self.star = node
        elif word == HASH:
            self.hash = node
        else:
            self.children[word] = node
        return node

    def remove_child(self, word: str) -> None:
        if word == STAR:
            self.star = None
        elif word == HASH:
            self.hash = None
        else:
            del self.children[word]


class SubscriptionTrie(Generic[T]):
    """Patterns -> values, matched against topics by walking words, not by scanning.

    Values are any hashable objects (the broker stores its subscription
    records). A (pattern, value) pair is stored at most once: inserting it
    again is a no-op. Patterns and topics are given as word tuples (from
    :func:`~minibroker.core.names.split_pattern` /
    :func:`~minibroker.core.names.split_topic`) or as strings, which are
    split and validated here.

    Not thread-safe; the broker core is single-threaded by design.
    """

    def __init__(self, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        """``cache_size`` bounds the match cache; 0 turns the cache off."""
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self._root: _Node[T] = _Node()
        self._nodes = 1  # the root, which is never pruned
        self._count = 0  # stored (pattern, value) pairs
        self._sequence = 0  # insertion counter, for result order
        self._cache: dict[str | tuple[str, ...], tuple[T, ...]] = {}
        self._cache_size = cache_size

    # --- size -----------------------------------------------------------------

    def __len__(self) -> int:
        """Number of stored (pattern, value) pairs."""
        return self._count

    @property
    def is_empty(self) -> bool:
        """True when no value is stored (the trie is then just its root)."""
        return self._count == 0

    @property
    def node_count(self) -> int:
        """Nodes in the trie, root included: 1 when empty, thanks to pruning."""
        return self._nodes

    @property
    def cached_topics(self) -> int:
        """Topics currently in the match cache (for metrics and tests)."""
        return len(self._cache)

    # --- changing ---------------------------------------------------------------

    def insert(self, pattern: str | Sequence[str], value: T) -> bool:
        """Store ``value`` under ``pattern``; False if that pair was already stored.

        A re-inserted pair keeps its original place in the result order.
        Raises InvalidName for a pattern that breaks the naming rules.
        """
        words = _pattern_words(pattern)
        node = self._root
        for word in words:
            child = node.child(word)
            if child is None:
                child = node.add_child(word)
                self._nodes += 1
            node = child
        if value in node.values:
            return False
        self._sequence += 1
        node.values[value] = self._sequence
        self._count += 1
        self._cache.clear()
        return True

    def remove(self, pattern: str | Sequence[str], value: T) -> bool:
        """Remove ``value`` from ``pattern``; False if that pair was not stored.

        Nodes left with neither values nor children are unlinked, bottom-up,
        so the trie shrinks back as subscriptions go away.
        """
        words = split_pattern(pattern) if isinstance(pattern, str) else tuple(pattern)
        path: list[tuple[_Node[T], str]] = []  # (parent, word) for each step
        node = self._root
        for word in words:
            child = node.child(word)
            if child is None:
                return False
            path.append((node, word))
            node = child
        if value not in node.values:
            return False
        del node.values[value]
        self._count -= 1
        self._cache.clear()
        # Prune: walk back up while the node we just left is empty.
        for parent, word in reversed(path):
            if not node.is_unused():
                break
            parent.remove_child(word)
            self._nodes -= 1
            node = parent
        return True

    # --- matching ---------------------------------------------------------------

    def match(self, topic: str | tuple[str, ...]) -> tuple[T, ...]:
        """Values whose pattern matches ``topic``, in insertion order, each once.

        ``topic`` is a topic string (validated with
        :func:`~minibroker.core.names.split_topic`, so it may raise
        InvalidName) or a word tuple the caller already split; tuples are
        trusted as given. Results are cached per topic until the next change.
        """
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        words = split_topic(topic) if isinstance(topic, str) else topic
        result = self._match_words(words)
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[topic] = result
        return result

    def _match_words(self, words: tuple[str, ...]) -> tuple[T, ...]:
        # `reached` is the set of nodes whose pattern prefix matches the words
        # consumed so far (a dict used as an insertion-ordered set). It is kept
        # closed under "a # may match zero words": see _enter.
        reached: dict[_Node[T], None] = {}
        _enter(reached, self._root)
        for word in words:
            following: dict[_Node[T], None] = {}
            for node in reached:
                literal = node.children.get(word)
                if literal is not None:
                    _enter(following, literal)
                if node.star is not None:
                    _enter(following, node.star)
                if node.swallows:  # this node's `#` takes the word too
                    _enter(following, node)
            if not following:
                return ()
            reached = following
        return _collect(reached)

    # --- inspection -------------------------------------------------------------

    def entries(self) -> Iterator[tuple[tuple[str, ...], T]]:
        """Every stored (pattern words, value) pair, in insertion order.

        Walks the whole trie: meant for debugging and admin listings, not for
        the publish path.
        """
        found: list[tuple[int, tuple[str, ...], T]] = []
        stack: list[tuple[_Node[T], tuple[str, ...]]] = [(self._root, ())]
        while stack:
            node, words = stack.pop()
            found.extend((seq, words, value) for value, seq in node.values.items())
            stack.extend((child, (*words, word)) for word, child in node.children.items())
            if node.star is not None:
                stack.append((node.star, (*words, STAR)))
            if node.hash is not None:
                stack.append((node.hash, (*words, HASH)))
        found.sort(key=lambda entry: entry[0])
        return ((words, value) for _, words, value in found)

    def __repr__(self) -> str:
        return f"<SubscriptionTrie values={self._count} nodes={self._nodes}>"


def _enter(reached: dict[_Node[T], None], node: _Node[T] | None) -> None:
    """Add ``node`` to a match state, with the ``#`` children it implies.

    A ``hash`` child matches zero words, so reaching a node also reaches its
    ``hash`` child at once (and that child's, for ``#.#``). A node already in
    the set has had its chain added before, so we can stop there.
    """
    while node is not None and node not in reached:
        reached[node] = None
        node = node.hash


def _collect(reached: dict[_Node[T], None]) -> tuple[T, ...]:
    """The values stored at the reached nodes, in insertion order, each once."""
    holders = [node.values for node in reached if node.values]
    if not holders:
        return ()
    if len(holders) == 1:  # the common case: one node, already in order
        return tuple(holders[0])
    ordered = sorted(chain.from_iterable(values.items() for values in holders), key=_by_sequence)
    # The same value stored under two matching patterns: keep its first place.
    return tuple(dict.fromkeys(value for value, _ in ordered))


def _pattern_words(pattern: str | Sequence[str]) -> tuple[str, ...]:
    """Validated words of a pattern given as a string or as words."""
    if isinstance(pattern, str):
        return split_pattern(pattern)
    words = tuple(pattern)
    if not all(isinstance(word, str) for word in words):
        raise InvalidName(f"topic pattern words must be strings, got {words!r}", rule="type")
    # Re-join and re-split: this applies every rule to the words and catches a
    # word that hides a separator ("a.b" as one word would be unreachable).
    if split_pattern(SEPARATOR.join(words)) != words:
        raise InvalidName(
            f"topic pattern words {words!r} are not the words of a valid pattern",
            rule="bad_words",
        )
    return words
