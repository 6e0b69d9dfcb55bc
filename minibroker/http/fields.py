"""Request fields: one description validates a JSON body and documents it.

An HTTP client can send anything: a string where a count belongs, ``true``
for an integer (Python's bool *is* an int), a list for a map. The core
expects plain values of the right types, so every field an operation reads
is declared here with its JSON type, checked before the core sees it (a
``bad_request`` naming the field otherwise), and rendered as a JSON
Schema for the OpenAPI document from the same declaration.

Message bodies are bytes in the broker; JSON has no bytes. A body is sent
as ``"body"`` (UTF-8 text, what curl users want) or ``"body_base64"``
(anything), and comes back as ``"body"`` when it is valid UTF-8 and as
``"body_base64"`` otherwise. Log record keys work the same way.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

from minibroker.errors import BadRequest

Kind = Literal[
    "string", "integer", "number", "boolean", "headers", "integers", "messages", "records", "start"
]

#: Largest integer a field accepts: bigger ones are no offset, count or id.
MAX_INTEGER: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Field:
    """One request field: its name, JSON kind, and whether it must be there."""

    name: str
    kind: Kind
    description: str
    required: bool = False
    default: Any = None
    #: Smallest value of an integer or number (JSON Schema ``minimum``).
    minimum: float | None = None


class Message(NamedTuple):
    """A message for the core (``Queue.put``, ``Topics.publish``): body and headers."""

    body: bytes
    headers: dict[str, str] | None


# ---------------------------------------------------------------- parsing


def parse_fields(fields: Sequence[Field], raw: object) -> dict[str, Any]:
    """The values of ``fields`` in ``raw`` (a decoded JSON object), converted.

    Unknown keys are refused, so a misspelt option is an error, not a
    silent default.
    """
    if not isinstance(raw, dict):
        raise BadRequest("the request body must be a JSON object")
    known = {f.name for f in fields}
    unknown = sorted(k for k in raw if k not in known)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}", fields=", ".join(unknown))
    out: dict[str, Any] = {}
    for f in fields:
        if f.name not in raw or raw[f.name] is None:
            if f.required:
                raise BadRequest(f"field {f.name!r} is required", field=f.name)
            out[f.name] = f.default
            continue
        out[f.name] = _PARSERS[f.kind](f, raw[f.name])
    return out


def parse_query(fields: Sequence[Field], query: Mapping[str, str]) -> dict[str, Any]:
    """Like :func:`parse_fields` for a query string: numbers arrive as text."""
    raw: dict[str, Any] = {}
    by_name = {f.name: f for f in fields}
    for key, text in query.items():
        f = by_name.get(key)
        if f is not None and f.kind in ("integer", "start") and _is_integer_text(text):
            raw[key] = int(text)
        elif f is not None and f.kind == "number":
            raw[key] = _number_text(f, text)
        elif f is not None and f.kind == "boolean":
            raw[key] = {"true": True, "false": False}.get(text, text)
        else:
            raw[key] = text
    return parse_fields(fields, raw)


def _is_integer_text(text: str) -> bool:
    return text.isascii() and (text.isdigit() or (text[:1] == "-" and text[1:].isdigit()))


def _number_text(f: Field, text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return value if value == value and abs(value) != float("inf") else text


def _fail(f: Field, wanted: str, value: object) -> BadRequest:
    return BadRequest(
        f"field {f.name!r} must be {wanted}, got {type(value).__name__}", field=f.name
    )


def _check_magnitude(f: Field, value: int) -> None:
    """JSON integers have no bound, Python's neither: refuse what no field can mean."""
    if not -MAX_INTEGER <= value <= MAX_INTEGER:
        raise BadRequest(
            f"field {f.name!r} must be between {-MAX_INTEGER} and {MAX_INTEGER}", field=f.name
        )


def _string(f: Field, value: object) -> str:
    if not isinstance(value, str):
        raise _fail(f, "a string", value)
    return value


def _integer(f: Field, value: object) -> int:
    if type(value) is not int:
        raise _fail(f, "an integer", value)
    _check_magnitude(f, value)
    if f.minimum is not None and value < f.minimum:
        raise BadRequest(f"field {f.name!r} must be at least {f.minimum:g}", field=f.name)
    return value


def _number(f: Field, value: object) -> float:
    if type(value) is int:
        _check_magnitude(f, value)  # float() of a 400-digit integer overflows
    elif type(value) is not float:
        raise _fail(f, "a number", value)
    number = float(value)
    if f.minimum is not None and number < f.minimum:
        raise BadRequest(f"field {f.name!r} must be at least {f.minimum:g}", field=f.name)
    return number


def _boolean(f: Field, value: object) -> bool:
    if type(value) is not bool:
        raise _fail(f, "true or false", value)
    return value


def _headers(f: Field, value: object) -> dict[str, str] | None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _fail(f, "an object of string values", value)
    return value or None


def _integers(f: Field, value: object) -> list[int]:
    if not isinstance(value, list):
        raise _fail(f, "a list of integers", value)
    return [_integer(f, item) for item in value]


def _start(f: Field, value: object) -> int | str:
    if type(value) is int:
        return _integer(f, value)
    if isinstance(value, str):
        return value
    raise _fail(f, "an offset or one of earliest, latest, committed", value)


def _bytes_of(item: dict[str, Any], name: str, where: str) -> bytes | None:
    """``item[name]`` (text) or ``item[name + "_base64"]`` as bytes, or None if neither."""
    text = item.get(name)
    encoded = item.get(f"{name}_base64")
    if text is not None and encoded is not None:
        raise BadRequest(f"{where}: give {name!r} or {name + '_base64'!r}, not both")
    if text is not None:
        if not isinstance(text, str):
            raise BadRequest(f"{where}: {name!r} must be a string")
        return text.encode()
    if encoded is not None:
        if not isinstance(encoded, str):
            raise BadRequest(f"{where}: {name + '_base64'!r} must be a string")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"{where}: {name + '_base64'!r} is not valid base64") from None
    return None


_MESSAGE_KEYS: Final = frozenset({"body", "body_base64", "headers"})
_RECORD_KEYS: Final = _MESSAGE_KEYS | {"key", "key_base64"}


def parse_message(item: object, where: str, keys: frozenset[str] = _MESSAGE_KEYS) -> Message:
    """One ``{"body" | "body_base64", "headers"?}`` object as a core message."""
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be an object with a body")
    unknown = sorted(k for k in item if k not in keys)
    if unknown:
        raise BadRequest(f"{where}: unknown field(s): {', '.join(unknown)}")
    body = _bytes_of(item, "body", where)
    if body is None:
        raise BadRequest(f"{where} needs 'body' or 'body_base64'")
    headers = item.get("headers")
    if headers is not None:
        headers = _headers(Field(f"{where}.headers", "headers", ""), headers)
    return Message(body, headers)


def _messages(f: Field, value: object) -> list[Message]:
    if not isinstance(value, list):
        raise _fail(f, "a list of messages", value)
    return [parse_message(item, f"{f.name}[{i}]") for i, item in enumerate(value)]


def _records(f: Field, value: object) -> list[tuple[bytes | None, dict[str, str] | None, bytes]]:
    if not isinstance(value, list):
        raise _fail(f, "a list of records", value)
    entries = []
    for i, item in enumerate(value):
        where = f"{f.name}[{i}]"
        message = parse_message(item, where, _RECORD_KEYS)
        key = _bytes_of(item, "key", where)
        entries.append((key, message.headers, message.body))
    return entries


_PARSERS: Final = {
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "headers": _headers,
    "integers": _integers,
    "messages": _messages,
    "records": _records,
    "start": _start,
}


# ------------------------------------------------------------------ output


def body_json(body: bytes, name: str = "body") -> dict[str, str]:
    """``{"body": text}`` for UTF-8 bodies, ``{"body_base64": ...}`` otherwise."""
    try:
        return {name: body.decode()}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(body).decode("ascii")}


# ------------------------------------------------------------------ schemas

_HEADERS_SCHEMA: Final = {"type": "object", "additionalProperties": {"type": "string"}}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema``, also allowing null: an optional field sent as null is taken
    as not sent (clients that serialise None send it), so the document says so."""
    if "oneOf" in schema:
        return {**schema, "oneOf": [*schema["oneOf"], {"type": "null"}]}
    return {**schema, "type": [schema["type"], "null"]}


_BODY_PROPERTIES: Final = {
    "body": _or_null({"type": "string", "description": "the body as UTF-8 text"}),
    "body_base64": _or_null({"type": "string", "description": "the body as base64 (any bytes)"}),
    "headers": _or_null(_HEADERS_SCHEMA),
}
MESSAGE_SCHEMA: Final = {
    "type": "object",
    "properties": _BODY_PROPERTIES,
    "additionalProperties": False,
}
RECORD_SCHEMA: Final = {
    "type": "object",
    "properties": {
        **_BODY_PROPERTIES,
        "key": _or_null({"type": "string", "description": "the key as UTF-8 text"}),
        "key_base64": _or_null({"type": "string", "description": "the key as base64"}),
    },
    "additionalProperties": False,
}
_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer", "maximum": MAX_INTEGER},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "headers": _HEADERS_SCHEMA,
    "integers": {"type": "array", "items": {"type": "integer", "maximum": MAX_INTEGER}},
    "messages": {"type": "array", "items": MESSAGE_SCHEMA},
    "records": {"type": "array", "items": RECORD_SCHEMA},
    "start": {
        "oneOf": [
            {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER},
            {"type": "string", "enum": ["earliest", "latest", "committed"]},
        ]
    },
}


def field_schema(f: Field, *, in_query: bool = False) -> dict[str, Any]:
    """The JSON Schema of one field (in a JSON body, an optional one may be null)."""
    schema = dict(_SCHEMAS[f.kind])
    schema["description"] = f.description
    if f.minimum is not None:
        schema["minimum"] = f.minimum
    if f.default is not None:
        schema["default"] = f.default
    return schema if f.required or in_query else _or_null(schema)


def object_schema(fields: Sequence[Field]) -> dict[str, Any]:
    """The JSON Schema of a request body made of ``fields``."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {f.name: field_schema(f) for f in fields},
        "additionalProperties": False,
    }
    required = [f.name for f in fields if f.required]
    if required:
        schema["required"] = required
    return schema
