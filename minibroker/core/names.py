"""Validate and tokenize names: topics, subscription patterns, queues, logs, subjects.

Every name a client sends passes through here before the core uses it, so the
rest of the core can trust what it holds: a topic is a tuple of non-empty words,
a pattern's wildcards stand alone, and no name carries whitespace or control
characters that would make logs, metrics labels or error messages confusing.

Topic names follow RabbitMQ's topic exchange (and NATS's subjects): words
separated by dots, e.g. ``orders.eu.created``. Subscription patterns use two
wildcards, each of which must be a whole word:

* ``*`` matches exactly one word: ``orders.*`` matches ``orders.created`` but
  neither ``orders`` nor ``orders.eu.created``;
* ``#`` matches zero or more words: ``orders.#`` matches ``orders``,
  ``orders.created`` and ``orders.eu.created``; ``#`` alone matches everything.

Rules shared by every kind of name:

* not empty, at most :data:`MAX_NAME_LENGTH` characters (characters, not UTF-8
  bytes: RabbitMQ counts 255 bytes, we count code points, which is simpler to
  explain and never stricter for ASCII names);
* no whitespace (anything :meth:`str.isspace` accepts), no control characters
  (C0, DEL, C1) and no lone surrogates (they cannot be encoded as UTF-8, so
  they could never be sent back to a client);
* ``*`` and ``#`` are reserved for patterns: a published topic, a queue or log
  name and a request subject may not contain them anywhere.

Topics, patterns and request subjects are also split into words: no empty
words (so no leading, trailing or doubled dots) and at most :data:`MAX_WORDS`
words. Queue and log names are opaque keys: dots are allowed but carry no
meaning, so ``jobs.dead`` and even ``a..b`` are fine there.

Speed: :func:`split_topic` runs on every publish, so the valid case is one
length check plus one precompiled regular expression, behind an LRU cache
keyed by the name (brokers see the same few topics over and over). Only when
a name is rejected do we walk it again, slowly, to say exactly which rule it
broke; exceptions are never cached, so hostile input cannot fill the cache
with garbage beyond its fixed size.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Final

from minibroker.errors import InvalidName

__all__ = [
    "HASH",
    "MAX_NAME_LENGTH",
    "MAX_WORDS",
    "SEPARATOR",
    "STAR",
    "SUBJECT",
    "check_name",
    "split_pattern",
    "split_topic",
]

#: Longest name of any kind, in characters.
MAX_NAME_LENGTH: Final = 255
#: Most words in a topic, pattern or subject (also bounds trie depth per name).
MAX_WORDS: Final = 32
#: Separates the words of topics, patterns and subjects.
SEPARATOR: Final = "."
#: Pattern wildcard: exactly one word.
STAR: Final = "*"
#: Pattern wildcard: zero or more words.
HASH: Final = "#"
#: The ``kind`` of request/reply subjects; :func:`check_name` applies topic rules to it.
SUBJECT: Final = "subject"

# Characters no name may contain. `\s` covers every Unicode whitespace
# character in a str pattern; the ranges are C0 controls, DEL + C1 controls
# and UTF-16 surrogates (which Python strings can hold but UTF-8 cannot).
_FORBIDDEN_CHARS = r"\s\x00-\x1f\x7f-\x9f\ud800-\udfff"


def _compiled_on_first_use(
    global_name: str, pattern: str, method: str
) -> Callable[[str], re.Match[str] | None]:
    """A stand-in for ``re.compile(pattern).<method>``, bound to ``global_name``,
    that compiles the pattern when first called and puts the compiled method
    in its place, so later calls cost what a precompiled pattern costs.

    Why not compile at import: these character classes reach past U+00FF (the
    surrogates), which makes ``re`` build a 64K-entry map for each; the four
    patterns cost some 16 million instructions, a tenth of what ``minibroker
    serve`` spent above ``import trio`` before its first client (issue 19),
    and a broker pays for each only when it first checks such a name.
    """

    def first_use(name: str) -> re.Match[str] | None:
        compiled: Callable[[str], re.Match[str] | None] = getattr(re.compile(pattern), method)
        globals()[global_name] = compiled
        return compiled(name)

    return first_use


_forbidden_search = _compiled_on_first_use("_forbidden_search", f"[{_FORBIDDEN_CHARS}]", "search")

# A literal word: anything but the separator, the wildcards and forbidden chars.
_WORD = rf"[^.*#{_FORBIDDEN_CHARS}]+"
_PATTERN_WORD = rf"(?:{_WORD}|\*|\#)"

# Every class excludes the dot, so these never backtrack: linear in the name.
_topic_fullmatch = _compiled_on_first_use(
    "_topic_fullmatch", rf"{_WORD}(?:\.{_WORD})*", "fullmatch"
)
_pattern_fullmatch = _compiled_on_first_use(
    "_pattern_fullmatch", rf"{_PATTERN_WORD}(?:\.{_PATTERN_WORD})*", "fullmatch"
)
_resource_fullmatch = _compiled_on_first_use(
    "_resource_fullmatch", rf"[^*#{_FORBIDDEN_CHARS}]+", "fullmatch"
)

#: How many distinct valid topics (and patterns) :func:`split_topic` remembers.
_TOPIC_CACHE_SIZE: Final = 4096
_PATTERN_CACHE_SIZE: Final = 1024


def split_topic(name: str) -> tuple[str, ...]:
    """Split a published topic name into its words, after checking the rules.

    >>> split_topic("orders.eu.created")
    ('orders', 'eu', 'created')

    Raises :class:`~minibroker.errors.InvalidName` naming the rule that
    ``name`` breaks (empty, too long, forbidden character, empty word,
    wildcard, too many words). Valid results are cached, so calling this on
    every publish costs a dictionary lookup for topics seen before.
    """
    if not isinstance(name, str):
        raise _invalid("topic name", name, wildcards=False)
    return _split_topic(name)


def split_pattern(pattern: str) -> tuple[str, ...]:
    """Split a subscription pattern into its words, after checking the rules.

    >>> split_pattern("orders.*.#")
    ('orders', '*', '#')

    Like :func:`split_topic`, except that a word may be exactly ``*`` (one
    word) or ``#`` (zero or more words). A word that mixes a wildcard with
    text, such as ``a*`` or ``#b``, is rejected rather than read literally:
    RabbitMQ would silently treat it as a literal word that no topic can ever
    carry, which is a subscription that never fires and nobody notices.

    Redundant forms such as ``#.#`` are valid and kept as written; the trie
    matches them correctly (see :mod:`minibroker.core.trie`).
    """
    if not isinstance(pattern, str):
        raise _invalid("topic pattern", pattern, wildcards=True)
    return _split_pattern(pattern)


def check_name(kind: str, name: str) -> str:
    """Check a queue, log or subject name and return it unchanged.

    ``kind`` names the thing in the error message (``"queue"``, ``"log"``,
    ``"dead-letter queue"`` ...). Queue and log names must be non-empty, at
    most :data:`MAX_NAME_LENGTH` characters, without whitespace, control
    characters or the wildcards ``*`` and ``#``; dots are allowed and carry
    no meaning.

    Request/reply subjects (``kind == SUBJECT``, i.e. ``"subject"``) follow
    the stricter topic rules instead (non-empty words, at most
    :data:`MAX_WORDS` of them), because a subject *is* a topic-like,
    dot-separated name: ``svc.echo`` reads like NATS's subjects, and keeping
    the same grammar means a subject is always also a valid topic, so
    wildcard responders or a topic bridge can be added later without
    renaming anything. Today subjects are still matched exactly.
    """
    if kind == SUBJECT:
        if not isinstance(name, str):
            raise _invalid("subject", name, wildcards=False)
        if _split_words(name) is None:
            raise _invalid("subject", name, wildcards=False)
        return name
    if isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and _resource_fullmatch(name):
        return name
    raise _invalid(f"{kind} name", name, wildcards=False, words=False)


# --- the fast paths ---------------------------------------------------------


def _split_words(name: str) -> tuple[str, ...] | None:
    """Words of a valid topic name, or None if any rule is broken."""
    if len(name) > MAX_NAME_LENGTH or _topic_fullmatch(name) is None:
        return None
    words = tuple(name.split(SEPARATOR))
    return words if len(words) <= MAX_WORDS else None


@lru_cache(maxsize=_TOPIC_CACHE_SIZE)
def _split_topic(name: str) -> tuple[str, ...]:
    words = _split_words(name)
    if words is None:
        raise _invalid("topic name", name, wildcards=False)
    return words


@lru_cache(maxsize=_PATTERN_CACHE_SIZE)
def _split_pattern(pattern: str) -> tuple[str, ...]:
    if len(pattern) <= MAX_NAME_LENGTH and _pattern_fullmatch(pattern) is not None:
        words = tuple(pattern.split(SEPARATOR))
        if len(words) <= MAX_WORDS:
            return words
    raise _invalid("topic pattern", pattern, wildcards=True)


# --- the slow path: say exactly what is wrong -------------------------------


def _show(name: str) -> str:
    """repr() of a name for an error message, cut short if it is huge."""
    if len(name) > 80:
        return f"{name[:60]!r}... ({len(name)} characters)"
    return repr(name)


def _invalid(label: str, name: object, *, wildcards: bool, words: bool = True) -> InvalidName:
    """Build the InvalidName for a name the fast path rejected.

    ``label`` is how the message refers to the name ("topic name", "queue
    name" ...); ``wildcards`` says whether standalone ``*``/``#`` words are
    allowed (patterns); ``words`` whether the name is made of dot-separated
    words at all (False for queue and log names).
    """
    rule, message = _diagnose(label, name, wildcards=wildcards, words=words)
    return InvalidName(message, rule=rule, kind=label)


def _diagnose(label: str, name: object, *, wildcards: bool, words: bool) -> tuple[str, str]:
    """Return (rule, message) for the first rule that ``name`` breaks."""
    if not isinstance(name, str):
        return "type", f"{label} must be a string, not {type(name).__name__}"
    if not name:
        return "empty", f"{label} must not be empty"
    shown = _show(name)
    if len(name) > MAX_NAME_LENGTH:
        return "too_long", (
            f"{label} {shown} is {len(name)} characters long; the maximum is {MAX_NAME_LENGTH}"
        )
    bad_char = _forbidden_search(name)
    if bad_char is not None:
        return "forbidden_char", (
            f"{label} {shown} contains {bad_char.group()!r} at index {bad_char.start()}: "
            "whitespace and control characters are not allowed in names"
        )
    if not words:
        for wildcard in (STAR, HASH):
            if wildcard in name:
                return "wildcard", (
                    f"{label} {shown} contains {wildcard!r}: "
                    "'*' and '#' are reserved for subscription patterns"
                )
        return "invalid", f"{label} {shown} is not a valid name"  # unreachable in practice
    parts = name.split(SEPARATOR)
    for index, word in enumerate(parts):
        if not word:
            return "empty_word", (
                f"{label} {shown} has an empty word at position {index}: words are separated "
                "by single dots, with no leading, trailing or doubled dots"
            )
    for word in parts:
        if STAR not in word and HASH not in word:
            continue
        if not wildcards:
            return "wildcard", (
                f"{label} {shown} contains the wildcard in word {word!r}: "
                "'*' and '#' are only allowed in subscription patterns"
            )
        if word not in (STAR, HASH):
            return "bad_wildcard", (
                f"{label} {shown} has word {word!r} that mixes a wildcard with text: "
                "'*' and '#' must each be a whole word, e.g. 'a.*' or 'a.#'"
            )
    if len(parts) > MAX_WORDS:
        return "too_many_words", (
            f"{label} {shown} has {len(parts)} words; the maximum is {MAX_WORDS}"
        )
    return "invalid", f"{label} {shown} is not a valid name"  # unreachable in practice
