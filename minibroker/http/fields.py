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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

from minibroker.core.config import Limits
from minibroker.core.names import check_name, split_pattern, split_topic
from minibroker.errors import BadRequest
from minibroker.http import patterns

Kind = Literal[
    "string", "integer", "number", "boolean", "headers", "integers", "messages", "records", "start"
]

#: Largest integer a field accepts: bigger ones are no offset, count or id.
MAX_INTEGER: Final = 2**63 - 1

#: How a string field that is a name is checked: as a queue or log name
#: (``resource``), a topic, or a subscription pattern (``minibroker.core.names``).
NameRule = Literal["resource", "topic", "pattern"]
_NAME_PATTERNS: Final = {
    "resource": patterns.RESOURCE,
    "topic": patterns.TOPIC,
    "pattern": patterns.TOPIC_PATTERN,
}
_BASE64: Final = re.compile(patterns.BASE64.strip("^$"))


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
    #: Largest value: a number, or the name of the server limit that gives it
    #: (a :class:`~minibroker.core.config.Limits` attribute, e.g. ``max_fetch``).
    maximum: float | str | None = None
    #: A duration that may also be exactly 0 ("do not wait", "no delay"):
    #: 0 or [minimum, maximum] (see ``minibroker.core.durations``).
    zero: bool = False
    #: The only values a string field takes.
    choices: tuple[str, ...] = ()
    #: The naming rule of a string field that names something.
    name_rule: NameRule | None = None
    #: Most items of a list field: a number or a server limit's name.
    max_items: int | str | None = None


class Message(NamedTuple):
    """A message for the core (``Queue.put``, ``Topics.publish``): body and headers."""

    body: bytes
    headers: dict[str, str] | None


# ---------------------------------------------------------------- parsing


def parse_fields(
    fields: Sequence[Field], raw: object, limits: Limits | None = None
) -> dict[str, Any]:
    """The values of ``fields`` in ``raw`` (a decoded JSON object), converted
    and checked against the ranges, choices and naming rules the fields
    declare (``limits`` gives the maxima named by a server limit).

    Unknown keys are refused, so a misspelt option is an error, not a
    silent default. Every rule is checked here, before the core sees the
    request, so a request is refused the same way whatever state the queue
    or log is in: what the OpenAPI document promises does not depend on it.
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
        value = _PARSERS[f.kind](f, raw[f.name])
        _check_rules(f, value, limits or _DEFAULT_LIMITS)
        out[f.name] = value
    return out


_DEFAULT_LIMITS: Final = Limits()


def resolve(bound: float | str | None, limits: Limits) -> float | None:
    """A field's bound: the number itself, or the server limit it names."""
    if isinstance(bound, str):
        value: float = getattr(limits, bound)
        return value
    return bound


def _check_rules(f: Field, value: Any, limits: Limits) -> None:
    """The field's range, choices, naming rule and list length, on a parsed value."""
    if f.kind in ("integer", "number") or (f.kind == "start" and type(value) is int):
        _check_range(f, value, limits)
    elif f.kind == "integers":
        for item in value:
            _check_range(f, item, limits)
    if isinstance(value, str):
        if f.choices and value not in f.choices:
            raise BadRequest(
                f"field {f.name!r} must be one of {', '.join(f.choices)}, got {value!r}",
                field=f.name,
            )
        if f.name_rule == "resource":
            check_name(f.name.replace("_", " "), value)
        elif f.name_rule == "topic":
            split_topic(value)
        elif f.name_rule == "pattern":
            split_pattern(value)
    max_items = resolve(f.max_items, limits)
    if isinstance(value, list) and max_items is not None and len(value) > max_items:
        raise BadRequest(
            f"field {f.name!r} holds at most {max_items:g} items, got {len(value)}", field=f.name
        )


def _check_range(f: Field, value: float, limits: Limits) -> None:
    if f.zero and value == 0:
        return
    low, high = f.minimum, resolve(f.maximum, limits)
    if (low is None or value >= low) and (high is None or value <= high):
        return
    zero = "0 or " if f.zero else ""
    if high is None:
        wanted = f"at least {low:g}"
    elif low is None:
        wanted = f"at most {high:g}"
    else:
        wanted = f"{zero}between {low:g} and {high:g}"
    raise BadRequest(f"field {f.name!r} must be {wanted}, got {value!r}", field=f.name)


def parse_query(
    fields: Sequence[Field], query: Mapping[str, str], limits: Limits | None = None
) -> dict[str, Any]:
    """Like :func:`parse_fields` for a query string: numbers arrive as text."""
    raw: dict[str, Any] = {}
    by_name = {f.name: f for f in fields}
    for key, text in query.items():
        f = by_name.get(key)
        if f is not None and f.kind in ("integer", "start") and _is_integer_text(text):
            raw[key] = int(text)
        elif f is not None and f.kind == "integer":
            raw[key] = _number_text(f, text)  # 89.0 or 1e3: _integer takes whole ones
        elif f is not None and f.kind == "number":
            raw[key] = _number_text(f, text)
        elif f is not None and f.kind == "boolean":
            raw[key] = {"true": True, "false": False}.get(text, text)
        else:
            raw[key] = text
    return parse_fields(fields, raw, limits)


def _is_integer_text(text: str) -> bool:
    return _INTEGER_TEXT.fullmatch(text) is not None


#: Numbers in a query string as JSON writes them: ``float()`` alone would also
#: take ``1_000``, `` 5``, ``infinity`` and digits of other scripts, which no
#: schema-driven client sends as a number and the document does not allow.
_INTEGER_TEXT: Final = re.compile(r"-?[0-9]+")
_NUMBER_TEXT: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _number_text(f: Field, text: str) -> float | str:
    if _NUMBER_TEXT.fullmatch(text) is None:
        return text
    value = float(text)
    return value if abs(value) != float("inf") else text


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
    if type(value) is float and value.is_integer():
        # JSON Schema's "integer" is any number with no fraction: 89.0 is one.
        value = int(value)
    if type(value) is not int:
        raise _fail(f, "an integer", value)
    _check_magnitude(f, value)
    return value


def _number(f: Field, value: object) -> float:
    if type(value) is int:
        _check_magnitude(f, value)  # float() of a 400-digit integer overflows
    elif type(value) is not float:
        raise _fail(f, "a number", value)
    number = float(value)
    if number != number or abs(number) == float("inf"):  # 1e400 parses as inf
        raise _fail(f, "a finite number", value)
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
    # An empty object stays one here, so that it counts as sent beside a batch
    # (the OpenAPI document refuses that too); a message's headers drop it.
    return value


def _integers(f: Field, value: object) -> list[int]:
    if not isinstance(value, list):
        raise _fail(f, "a list of integers", value)
    return [_integer(f, item) for item in value]


def _start(f: Field, value: object) -> int | str:
    if type(value) in (int, float):
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
        if _BASE64.fullmatch(encoded) is None:
            raise BadRequest(f"{where}: {name + '_base64'!r} is not valid (padded) base64")
        return base64.b64decode(encoded)
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
        headers = _headers(Field(f"{where}.headers", "headers", ""), headers) or None
    return Message(body, headers)


def record_key(item: dict[str, Any], where: str) -> bytes | None:
    """A record's ``key`` (text) or ``key_base64``, as bytes; None if neither."""
    return _bytes_of(item, "key", where)


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
        key = record_key(item, where)
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
_NULL: Final = {"type": "null"}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema``, also allowing null: an optional field sent as null is taken
    as not sent (clients that serialise None send it), so the document says so."""
    if "oneOf" in schema:
        return {**schema, "oneOf": [*schema["oneOf"], _NULL]}
    if "type" not in schema:
        return {"anyOf": [schema, _NULL]}
    if "enum" in schema:  # a null must pass the choices as well as the type
        return {**schema, "type": [schema["type"], "null"], "enum": [*schema["enum"], None]}
    return {**schema, "type": [schema["type"], "null"]}


_TEXT: Final = {"type": "string"}
_BASE64_TEXT: Final = {"type": "string", "pattern": patterns.BASE64}


def _one_of_text_or_base64(name: str, *, required: bool) -> dict[str, Any]:
    """``name`` or ``name_base64`` (not both; one of them if ``required``),
    an absent field and a null one being the same (see ``_bytes_of``)."""
    encoded = f"{name}_base64"
    either = [
        {"required": [name], "properties": {name: _TEXT, encoded: _NULL}},
        {"required": [encoded], "properties": {encoded: _BASE64_TEXT, name: _NULL}},
    ]
    if not required:
        either.append({"properties": {name: _NULL, encoded: _NULL}})
    return {"oneOf": either}


_BODY_PROPERTIES: Final = {
    "body": _or_null({"type": "string", "description": "the body as UTF-8 text"}),
    "body_base64": _or_null(
        {**_BASE64_TEXT, "description": "the body as base64, with padding (any bytes)"}
    ),
    "headers": _or_null(_HEADERS_SCHEMA),
}
MESSAGE_SCHEMA: Final = {
    "type": "object",
    "description": "a message: 'body' or 'body_base64' (one of them), and headers",
    "properties": _BODY_PROPERTIES,
    "additionalProperties": False,
    **_one_of_text_or_base64("body", required=True),
}
RECORD_SCHEMA: Final = {
    "type": "object",
    "description": "a record: 'body' or 'body_base64' (one of them), a key "
    "('key' or 'key_base64', at most one of them) and headers",
    "properties": {
        **_BODY_PROPERTIES,
        "key": _or_null({"type": "string", "description": "the key as UTF-8 text"}),
        "key_base64": _or_null({**_BASE64_TEXT, "description": "the key as base64"}),
    },
    "additionalProperties": False,
    "allOf": [
        _one_of_text_or_base64("body", required=True),
        _one_of_text_or_base64("key", required=False),
    ],
}


def one_body(batch: str | None, others: Sequence[str]) -> dict[str, Any]:
    """The rule of a request body that carries a ``batch`` (a list field) or
    one message: ``body`` or ``body_base64``, exactly one of them, with
    ``others`` (headers, a key) beside it; never a batch and a message's
    fields together. An absent field and a null one are the same."""
    no_batch = {} if batch is None else {batch: _NULL}
    branches: list[dict[str, Any]] = [
        {
            "required": ["body"],
            "properties": {"body": _TEXT, "body_base64": _NULL, **no_batch},
        },
        {
            "required": ["body_base64"],
            "properties": {"body_base64": _BASE64_TEXT, "body": _NULL, **no_batch},
        },
    ]
    if batch is not None:
        alone = dict.fromkeys(("body", "body_base64", *others), _NULL)
        branches.insert(0, {"required": [batch], "properties": {batch: {"type": "array"}, **alone}})
    return {"oneOf": branches}


def one_record_body() -> dict[str, Any]:
    """The rule of an append's body: ``records``, or one record's ``body`` or
    ``body_base64`` with ``headers`` and at most one of ``key`` and ``key_base64``
    (as an item of ``records`` takes them)."""
    return {
        **one_body("records", ("headers", "key", "key_base64")),
        "allOf": [_one_of_text_or_base64("key", required=False)],
    }


def _integer_schema(f: Field, limits: Limits) -> dict[str, Any]:
    high = resolve(f.maximum, limits)
    return {
        "type": "integer",
        "minimum": -MAX_INTEGER if f.minimum is None else f.minimum,
        "maximum": MAX_INTEGER if high is None else high,
    }


def _number_schema(f: Field, limits: Limits) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    high = resolve(f.maximum, limits)
    if high is not None:
        schema["maximum"] = high
    if f.minimum is not None:
        if f.zero:  # 0, or at least the minimum (JSON Schema's minimum ignores null)
            schema["minimum"] = 0
            schema["anyOf"] = [{"const": 0}, {"minimum": f.minimum}]
        else:
            schema["minimum"] = f.minimum
    return schema


def _string_schema(f: Field) -> dict[str, Any]:
    if f.choices:
        return {"type": "string", "enum": list(f.choices)}
    if f.name_rule is not None:
        return patterns.name_schema(_NAME_PATTERNS[f.name_rule])
    return {"type": "string"}


def _list_schema(f: Field, items: dict[str, Any], limits: Limits) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": items}
    max_items = resolve(f.max_items, limits)
    if max_items is not None:
        schema["maxItems"] = max_items
    return schema


def _kind_schema(f: Field, limits: Limits) -> dict[str, Any]:
    kind = f.kind
    if kind == "integer":
        return _integer_schema(f, limits)
    if kind == "number":
        return _number_schema(f, limits)
    if kind == "string":
        return _string_schema(f)
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "headers":
        return dict(_HEADERS_SCHEMA)
    if kind == "integers":
        return _list_schema(f, _integer_schema(f, limits), limits)
    if kind == "messages":
        return _list_schema(f, MESSAGE_SCHEMA, limits)
    if kind == "records":
        return _list_schema(f, RECORD_SCHEMA, limits)
    assert kind == "start"
    return {"oneOf": [_integer_schema(f, limits), _string_schema(f)]}


def field_schema(f: Field, limits: Limits, *, in_query: bool = False) -> dict[str, Any]:
    """The JSON Schema of one field (in a JSON body, an optional one may be null)."""
    schema = _kind_schema(f, limits)
    schema["description"] = f.description
    if f.default is not None:
        schema["default"] = f.default
    return schema if f.required or in_query else _or_null(schema)


def object_schema(fields: Sequence[Field], limits: Limits) -> dict[str, Any]:
    """The JSON Schema of a request body made of ``fields``."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {f.name: field_schema(f, limits) for f in fields},
        "additionalProperties": False,
    }
    required = [f.name for f in fields if f.required]
    if required:
        schema["required"] = required
    return schema
