"""Naming rules: topics, patterns, queue/log names and subjects."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minibroker.core.names import (
    MAX_NAME_LENGTH,
    MAX_WORDS,
    SUBJECT,
    check_name,
    split_pattern,
    split_topic,
)
from minibroker.errors import InvalidName

# --- topics -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("a", ("a",)),
        ("orders.created", ("orders", "created")),
        ("orders.eu.created", ("orders", "eu", "created")),
        ("a-b_c:d/e@f", ("a-b_c:d/e@f",)),
        ("ünï.cödé.日本", ("ünï", "cödé", "日本")),
        ("x" * MAX_NAME_LENGTH, ("x" * MAX_NAME_LENGTH,)),
        (".".join(["w"] * MAX_WORDS), ("w",) * MAX_WORDS),
    ],
)
def test_valid_topics(name: str, words: tuple[str, ...]) -> None:
    assert split_topic(name) == words


@pytest.mark.parametrize(
    ("name", "rule", "fragment"),
    [
        ("", "empty", "must not be empty"),
        (".", "empty_word", "empty word at position 0"),
        ("a.", "empty_word", "empty word at position 1"),
        (".a", "empty_word", "empty word at position 0"),
        ("a..b", "empty_word", "empty word at position 1"),
        ("a b", "forbidden_char", "contains ' ' at index 1"),
        ("a.b\t", "forbidden_char", r"contains '\t' at index 3"),
        ("a\nb", "forbidden_char", "whitespace and control characters"),
        ("a\x00b", "forbidden_char", r"'\x00'"),
        ("a\x7fb", "forbidden_char", r"'\x7f'"),
        ("a\u2028b", "forbidden_char", "at index 1"),  # Unicode line separator
        ("a\ud800", "forbidden_char", "at index 1"),  # lone surrogate
        ("orders.*", "wildcard", "only allowed in subscription patterns"),
        ("orders.#", "wildcard", "only allowed in subscription patterns"),
        ("ord*ers", "wildcard", "'ord*ers'"),
        ("x" * (MAX_NAME_LENGTH + 1), "too_long", "256 characters long; the maximum is 255"),
        (".".join(["w"] * (MAX_WORDS + 1)), "too_many_words", "33 words; the maximum is 32"),
    ],
)
def test_invalid_topics_name_the_rule(name: str, rule: str, fragment: str) -> None:
    with pytest.raises(InvalidName) as info:
        split_topic(name)
    err = info.value
    assert err.details["rule"] == rule
    assert fragment in err.message
    assert err.message.startswith("topic name")
    if name and len(name) <= 80:
        assert repr(name) in err.message  # the message names the bad name


def test_huge_name_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidName) as info:
        split_topic("y" * 100_000)
    assert len(info.value.message) < 200
    assert "100000 characters" in info.value.message


@pytest.mark.parametrize("bad", [None, b"a.b", 3, ["a", "b"]])
def test_non_strings_are_invalid_names_not_crashes(bad: object) -> None:
    with pytest.raises(InvalidName, match="must be a string"):
        split_topic(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidName, match="must be a string"):
        split_pattern(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidName, match="must be a string"):
        check_name("queue", bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidName, match="must be a string"):
        check_name(SUBJECT, bad)  # type: ignore[arg-type]


# --- patterns -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("orders.created", ("orders", "created")),
        ("*", ("*",)),
        ("#", ("#",)),
        ("orders.*", ("orders", "*")),
        ("orders.#", ("orders", "#")),
        ("#.created", ("#", "created")),
        ("a.*.b.#", ("a", "*", "b", "#")),
        ("#.#", ("#", "#")),  # redundant but valid, kept as written
        ("*.*.*", ("*", "*", "*")),
    ],
)
def test_valid_patterns(pattern: str, words: tuple[str, ...]) -> None:
    assert split_pattern(pattern) == words


@pytest.mark.parametrize(
    ("pattern", "rule", "fragment"),
    [
        ("", "empty", "must not be empty"),
        ("a*", "bad_wildcard", "word 'a*' that mixes a wildcard with text"),
        ("#b", "bad_wildcard", "word '#b'"),
        ("a.**", "bad_wildcard", "word '**'"),
        ("a.*#", "bad_wildcard", "word '*#'"),
        ("a..*", "empty_word", "empty word at position 1"),
        ("a.#.", "empty_word", "empty word at position 2"),
        ("a .*", "forbidden_char", "contains ' '"),
        (".".join(["*"] * (MAX_WORDS + 1)), "too_many_words", "33 words"),
    ],
)
def test_invalid_patterns_name_the_rule(pattern: str, rule: str, fragment: str) -> None:
    with pytest.raises(InvalidName) as info:
        split_pattern(pattern)
    assert info.value.details["rule"] == rule
    assert fragment in info.value.message
    assert info.value.message.startswith("topic pattern")


# --- queue, log and subject names ---------------------------------------------


@pytest.mark.parametrize("name", ["jobs", "jobs.dead", "a..b", ".hidden", "ns/jobs-1", "x" * 255])
def test_valid_resource_names(name: str) -> None:
    assert check_name("queue", name) is name
    assert check_name("log", name) is name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "empty"),
        ("a b", "forbidden_char"),
        ("jobs\r\n", "forbidden_char"),
        ("a\x85b", "forbidden_char"),  # C1 control (NEL)
        ("jobs*", "wildcard"),
        ("jobs.#", "wildcard"),
        ("x" * 256, "too_long"),
    ],
)
def test_invalid_resource_names(name: str, rule: str) -> None:
    with pytest.raises(InvalidName) as info:
        check_name("dead-letter queue", name)
    assert info.value.details["rule"] == rule
    assert info.value.message.startswith("dead-letter queue name")


def test_subjects_follow_topic_rules() -> None:
    assert check_name(SUBJECT, "svc.echo") == "svc.echo"
    for bad, rule in [("svc..echo", "empty_word"), ("svc.*", "wildcard"), ("", "empty")]:
        with pytest.raises(InvalidName) as info:
            check_name(SUBJECT, bad)
        assert info.value.details["rule"] == rule
        assert info.value.message.startswith("subject")


def test_invalid_name_has_the_wire_code() -> None:
    with pytest.raises(InvalidName) as info:
        split_topic("a..b")
    assert info.value.code == "invalid_name"


# --- properties: the fast path agrees with a plain reading of the rules --------

# Characters chosen so that every rule gets exercised often.
_chars = st.sampled_from([*"ab.*#-", " ", "\t", "\x00", "\x9f", "é", "\u3000"])
_names = st.text(_chars, max_size=12) | st.text(max_size=12)


def _forbidden(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cs")


def _reference_words(name: str, *, wildcards: bool) -> tuple[str, ...] | None:
    """The rules as written in the module docstring, checked one by one."""
    if not name or len(name) > MAX_NAME_LENGTH or any(_forbidden(c) for c in name):
        return None
    words = tuple(name.split("."))
    if len(words) > MAX_WORDS or any(not w for w in words):
        return None
    for w in words:
        if ("*" in w or "#" in w) and not (wildcards and w in ("*", "#")):
            return None
    return words


@given(_names)
def test_split_topic_agrees_with_reference(name: str) -> None:
    expected = _reference_words(name, wildcards=False)
    if expected is None:
        with pytest.raises(InvalidName) as info:
            split_topic(name)
        assert info.value.details["rule"] != "invalid"  # the slow path found the rule
    else:
        assert split_topic(name) == expected


@given(_names)
def test_split_pattern_agrees_with_reference(name: str) -> None:
    expected = _reference_words(name, wildcards=True)
    if expected is None:
        with pytest.raises(InvalidName) as info:
            split_pattern(name)
        assert info.value.details["rule"] != "invalid"
    else:
        assert split_pattern(name) == expected


@given(_names)
def test_check_name_agrees_with_reference(name: str) -> None:
    ok = (
        0 < len(name) <= MAX_NAME_LENGTH
        and not any(_forbidden(c) for c in name)
        and not re.search(r"[*#]", name)
    )
    if ok:
        assert check_name("queue", name) == name
    else:
        with pytest.raises(InvalidName) as info:
            check_name("queue", name)
        assert info.value.details["rule"] != "invalid"


@given(st.lists(st.text(st.sampled_from("abc*#"), min_size=1, max_size=3), min_size=1))
def test_topics_are_valid_patterns(words: list[str]) -> None:
    """Every valid topic is also a valid pattern (one that matches only itself)."""
    name = ".".join(words)
    try:
        topic = split_topic(name)
    except InvalidName:
        return
    assert split_pattern(name) == topic
    assert check_name(SUBJECT, name) == name
