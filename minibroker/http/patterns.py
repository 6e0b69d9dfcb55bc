"""The naming rules of the core as JSON Schema patterns, for the OpenAPI document.

A schema-driven client (schemathesis, a generated SDK) only knows what the
document says: if it promises that any string is a queue name, a name with
a control character is a "valid" request the broker refuses. So the rules
of :mod:`minibroker.core.names` and the namespace rule
(``minibroker.core.broker.check_namespace_name``) are written here as
regular expressions, in the subset that ECMA-262 (what JSON Schema
validators run), Python's ``re`` and Rust's ``regex`` read the same way:
``\\xHH`` and ``\\uHHHH`` escapes and explicit ranges, never ``\\s`` or
``\\w`` (ASCII-only in ECMA-262, Unicode in Python). tests/http/test_patterns.py
checks every code point against the core's own checks, so the two cannot drift.

A name in a URL path also cannot hold ``/`` (it would be another route)
nor be ``.`` or ``..`` (clients resolve those as path segments before the
request is sent): the broker accepts such names on its other ports, but
over HTTP they cannot be addressed, and the document says so.
"""

from __future__ import annotations

from typing import Final

from minibroker.core.broker import MAX_NAMESPACE_LENGTH
from minibroker.core.names import MAX_NAME_LENGTH, MAX_WORDS

#: What no name may contain: C0 controls and space, DEL and the C1 controls
#: (with U+0085, a line break) and no-break space, and the rest of Unicode's
#: whitespace (what ``str.isspace`` accepts). Surrogates are left out: a
#: request cannot carry one (UTF-8 has none), and Rust's regex refuses them.
FORBIDDEN: Final = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _class(excluded: str) -> str:
    return f"[^{excluded}{FORBIDDEN}]"


def _words(word: str) -> str:
    """``word`` (a regex), then at most MAX_WORDS - 1 more, dot-separated."""
    return f"^{word}(?:\\.{word}){{0,{MAX_WORDS - 1}}}$"


def _not_dot_segment(char: str, dotless: str) -> str:
    """Names of ``char`` that are neither ``.`` nor ``..``: a character that
    is not a dot somewhere, or three dots or more."""
    return f"^(?:{char}*{dotless}{char}*|\\.{{3,}})$"


#: A queue or log name in a JSON body (a dead-letter queue, a group).
RESOURCE: Final = f"^{_class('*#')}+$"
#: A queue or log name in a URL path.
RESOURCE_IN_PATH: Final = _not_dot_segment(_class("/*#"), _class("./*#"))
#: A topic or request subject: dot-separated words without wildcards.
TOPIC: Final = _words(f"{_class('.*#')}+")
#: The same in a URL path.
TOPIC_IN_PATH: Final = _words(f"{_class('./*#')}+")
#: A subscription pattern: words, each a literal or exactly ``*`` or ``#``.
TOPIC_PATTERN: Final = _words(f"(?:{_class('.*#')}+|\\*|#)")
#: A namespace: ASCII letters, digits, ``-``, ``_`` and ``.`` (empty: the default one).
NAMESPACE: Final = "^[A-Za-z0-9_.-]*$"
#: Standard base64 with its padding (``base64.b64decode(validate=True)`` takes this).
BASE64: Final = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def name_schema(pattern: str) -> dict[str, object]:
    """A name's string schema: the pattern and its length in characters."""
    return {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH, "pattern": pattern}


NAMESPACE_SCHEMA: Final = {
    "type": "string",
    "maxLength": MAX_NAMESPACE_LENGTH,
    "pattern": NAMESPACE,
}
