"""The OpenAPI document's name patterns say exactly what the core's checks accept.

Each pattern is run the way a JSON Schema validator runs it (jsonschema_rs, the
validator schemathesis uses, with ECMA-262 semantics) and the way Python's
``re`` does (schemathesis generates from it), against every code point and a
set of structural cases, and compared with ``minibroker.core.names`` and the
namespace rule.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

import jsonschema_rs
import pytest

from minibroker.core.broker import check_namespace_name
from minibroker.core.names import MAX_NAME_LENGTH, MAX_WORDS, check_name, split_pattern, split_topic
from minibroker.errors import BadRequest, InvalidName
from minibroker.http import patterns
from minibroker.http.fields import parse_message


def _accepts(check: Callable[[str], object], name: str) -> bool:
    try:
        check(name)
    except InvalidName:
        return False
    return True


def _validators(pattern: str) -> tuple[Callable[[str], bool], Callable[[str], bool]]:
    schema = {"type": "string", "pattern": pattern}
    ecma = jsonschema_rs.validator_for(schema).is_valid
    python = re.compile(pattern)
    return ecma, lambda name: python.search(name) is not None


#: Every code point but the surrogates (no request can carry one).
CODE_POINTS = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]

CASES: dict[str, tuple[str, Callable[[str], object], list[str]]] = {
    "resource": (
        patterns.RESOURCE,
        lambda name: check_name("queue", name),
        ["a..b", ".", "..", "a.b", "a*", "#", "a b", "x" * MAX_NAME_LENGTH],
    ),
    "topic": (
        patterns.TOPIC,
        split_topic,
        [
            "a.b",
            "a..b",
            ".a",
            "a.",
            "a.*",
            "*",
            "#",
            ".".join("w" * MAX_WORDS),
            ".".join("w" * (MAX_WORDS + 1)),
        ],
    ),
    "pattern": (
        patterns.TOPIC_PATTERN,
        split_pattern,
        [
            "a.*",
            "#",
            "a.#.b",
            "a*",
            "*a",
            "##",
            "a..b",
            "*.*",
            ".".join("*" * MAX_WORDS),
            ".".join("#" * (MAX_WORDS + 1)),
        ],
    ),
    "namespace": (patterns.NAMESPACE, check_namespace_name, ["", "a.b-c_d", "a b", "é", "A9"]),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_every_character_is_judged_alike(kind: str) -> None:
    pattern, check, _ = CASES[kind]
    ecma, python = _validators(pattern)
    for char in CODE_POINTS:
        name = f"a{char}b"
        expected = _accepts(check, name)
        assert ecma(name) is expected, (kind, hex(ord(char)))
        assert python(name) is expected, (kind, hex(ord(char)))


@pytest.mark.parametrize("kind", sorted(CASES))
def test_structural_cases_are_judged_alike(kind: str) -> None:
    pattern, check, examples = CASES[kind]
    ecma, python = _validators(pattern)
    for name in examples:
        expected = _accepts(check, name)
        if kind == "namespace":
            assert (ecma(name), python(name)) == (expected, expected), name
        else:  # the length bound is the schema's maxLength, not the pattern's
            schema = patterns.name_schema(pattern)
            valid = jsonschema_rs.validator_for(schema).is_valid(name)
            assert (valid, python(name)) == (expected, expected or len(name) > MAX_NAME_LENGTH), (
                name
            )


def test_a_name_in_a_path_is_a_name_without_slash_or_dot_segments() -> None:
    ecma, python = _validators(patterns.RESOURCE_IN_PATH)
    for name, expected in [
        ("jobs", True),
        ("a.b", True),
        ("...", True),
        (".a", True),
        ("a..", True),
        (".", False),
        ("..", False),
        ("a/b", False),
        ("a*", False),
    ]:
        assert (ecma(name), python(name)) == (expected, expected), name
    ecma, python = _validators(patterns.TOPIC_IN_PATH)
    assert not ecma("a/b.c") and not python("a/b.c")
    assert ecma("a.b.c") and python("a.b.c")


def test_base64_pattern_is_what_decodes() -> None:
    """Padded standard base64: what the broker decodes (``minibroker/http/fields.py``)."""
    ecma, python = _validators(patterns.BASE64)
    for text, expected in [
        ("", True),
        ("QQ==", True),
        ("QUI=", True),
        ("QUJD", True),
        ("QQ", False),
        ("QQ=", False),
        ("Q===", False),
        ("QUJD=", False),
        ("QQ==QQ==", False),
        ("QU JD", False),
        ("QU\nJD", False),
        ("QUJ-", False),
    ]:
        assert (ecma(text), python(text)) == (expected, expected), text
        body = {"body_base64": text}
        if expected:
            assert parse_message(body, "m").body == base64.b64decode(text)
        else:
            with pytest.raises(BadRequest):
                parse_message(body, "m")
