"""Field-level validation: a bad request is answered with an error that names the field.

The decoder is compiled from each frame's annotations, so these tests walk
every field of every request type: a missing required field, a value of the
wrong type, and a bool where an integer is expected must each give
``bad_request`` naming the field, with the request id kept so the error can
be matched to its request.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import pytest

# The server's request decoders, fast paths included (handlers register them).
from minibroker.errors import BadRequest, UnknownOp
from minibroker.protocol import frames
from minibroker.protocol.codec import FrameDecoder, InvalidFrame, decode_request, pack_frame
from minibroker.protocol.frame_class import fields, is_frame_class
from minibroker.protocol.frames import REQUEST_TYPES

# The server's request decoders, fast paths included.
from minibroker.protocol.ops import REQUEST_DECODERS


def valid_value(annotation: object) -> object:
    """One acceptable wire value for a field of this type."""
    if annotation is str:
        return "name"
    if annotation is bytes:
        return b"\x00body"
    if annotation is int:
        return 1
    if annotation is float:
        return 1.5
    if annotation is bool:
        return True
    if annotation is Any:
        return None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        return valid_value(next(a for a in args if a is not type(None)))
    if origin is list:
        return [valid_value(args[0])]
    if origin is dict:
        return {"k": "v"}
    if origin is Literal:
        return args[0]
    if is_frame_class(annotation):
        assert isinstance(annotation, type)
        return minimal_map(annotation, required_only=False)
    raise AssertionError(f"no example value for {annotation!r}")


def wrong_values(annotation: object) -> list[object]:
    """Values no field of this type accepts (a bool where a number is due, among others)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return wrong_values(non_none[0])
        # int | str
        return [1.5, True, [1], {"a": "b"}, b"raw"]
    if annotation is str:
        return [1, True, b"bytes", [], {}]
    if annotation is bytes:
        return [1, True, 1.5, [], {}]
    if annotation in (int, float):
        return [True, False, "1", b"1", [], {}] + ([1.5] if annotation is int else [])
    if annotation is bool:
        return [1, 0, "true", 1.5, []]
    if origin is list:
        return ["not a list", 1, {"a": "b"}]
    if origin is dict:
        return ["not a map", [["k", "v"]], {"k": 1}, {1: "v"}]
    if origin is Literal:
        return ["no such option", 1, True]
    if is_frame_class(annotation):
        return ["not a map", 1, []]
    return []


def minimal_map(cls: type, *, required_only: bool = True) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    out: dict[str, object] = {}
    for field in fields(cls):
        if field.required or not required_only:
            out[field.name] = valid_value(hints[field.name])
    return out


def request_map(cls: type[frames.Request], **fields: object) -> dict[str, object]:
    return {"op": cls.op, **minimal_map(cls), "id": 42, **fields}


def decode(value: dict[str, object]) -> object:
    decoder = FrameDecoder(decoders=REQUEST_DECODERS)
    decoder.receive_data(pack_frame(value))
    (result,) = decoder.frames()
    return result


def field_cases() -> list[tuple[type[frames.Request], str, object]]:
    cases = []
    for cls in REQUEST_TYPES:
        hints = typing.get_type_hints(cls)
        for field in fields(cls):
            if field.name == "id":
                continue
            for wrong in wrong_values(hints[field.name]):
                cases.append((cls, field.name, wrong))
    return cases


def required_cases() -> list[tuple[type[frames.Request], str]]:
    return [
        (cls, field.name)
        for cls in REQUEST_TYPES
        for field in fields(cls)
        if field.name != "id" and field.required
    ]


@pytest.mark.parametrize("cls", REQUEST_TYPES, ids=lambda c: c.op)
def test_minimal_request_is_valid(cls: type[frames.Request]) -> None:
    result = decode(request_map(cls))
    assert type(result) is cls


@pytest.mark.parametrize("cls", REQUEST_TYPES, ids=lambda c: c.op)
def test_every_field_given_is_valid(cls: type[frames.Request]) -> None:
    full = {"op": cls.op, **minimal_map(cls, required_only=False), "id": 42}
    result = decode(full)
    assert type(result) is cls


@pytest.mark.parametrize(
    ("cls", "name", "wrong"),
    field_cases(),
    ids=lambda v: v.op if isinstance(v, type) else repr(v)[:20],
)
def test_wrong_type_names_the_field(cls: type[frames.Request], name: str, wrong: object) -> None:
    result = decode(request_map(cls, **{name: wrong}))
    assert isinstance(result, InvalidFrame), f"{cls.op}.{name}={wrong!r} was accepted"
    assert result.id == 42
    assert isinstance(result.error, BadRequest)
    assert f"'{name}" in result.error.message, result.error.message


@pytest.mark.parametrize(("cls", "name"), required_cases(), ids=lambda v: getattr(v, "op", v))
def test_missing_required_field_names_it(cls: type[frames.Request], name: str) -> None:
    value = request_map(cls)
    del value[name]
    result = decode(value)
    assert isinstance(result, InvalidFrame)
    assert result.id == 42
    assert result.error.message == f"missing required field {name!r}"
    # nil means absent, so a nil required field is missing too.
    result = decode(request_map(cls, **{name: None}))
    assert isinstance(result, InvalidFrame)
    assert name in result.error.message


def test_bool_is_not_an_integer() -> None:
    result = decode(request_map(frames.Fetch, queue="q", max_messages=True))
    assert isinstance(result, InvalidFrame)
    assert result.error.message == "field 'max_messages' must be an integer, got bool"


def test_integers_are_accepted_as_numbers() -> None:
    result = decode(request_map(frames.Fetch, queue="q", wait=2))
    assert result == frames.Fetch(id=42, queue="q", wait=2.0)
    assert type(result.wait) is float  # type: ignore[attr-defined]


def test_strings_are_accepted_as_bodies() -> None:
    result = decode(request_map(frames.Ping, data="text"))
    assert result == frames.Ping(id=42, data=b"text")


def test_nested_fields_are_named_with_their_path() -> None:
    messages = [{"body": b"ok"}, {"body": b"ok", "headers": {"k": 1}}]
    result = decode(request_map(frames.Put, queue="q", messages=messages))
    assert isinstance(result, InvalidFrame)
    assert "'messages[1].headers'" in result.error.message

    result = decode(request_map(frames.Append, log="l", records=[{"key": b"k"}]))
    assert isinstance(result, InvalidFrame)
    assert result.error.message == "missing required field 'records[0].body'"

    result = decode(request_map(frames.Ack, queue="q", deliveries=[1, 2, "3"]))
    assert isinstance(result, InvalidFrame)
    assert result.error.message == "field 'deliveries[2]' must be an integer, got str"


def test_literal_lists_the_options() -> None:
    result = decode(request_map(frames.Subscribe, pattern="a.*", on_overflow="explode"))
    assert isinstance(result, InvalidFrame)
    assert "'drop_oldest', 'disconnect'" in result.error.message


def test_unknown_keys_are_ignored() -> None:
    result = decode({"op": "ping", "id": 1, "from_the_future": [1, 2]})
    assert result == frames.Ping(id=1)


def test_unknown_op() -> None:
    result = decode({"op": "teleport", "id": 5})
    assert isinstance(result, InvalidFrame)
    assert result.id == 5
    assert isinstance(result.error, UnknownOp)
    assert "'teleport'" in result.error.message


@pytest.mark.parametrize("op", sorted(frames.SERVER_FRAMES))
def test_server_frames_are_not_requests(op: str) -> None:
    result = decode({"op": op, "id": 5})
    assert isinstance(result, InvalidFrame)
    assert isinstance(result.error, UnknownOp)


@pytest.mark.parametrize("op", [None, 1, b"ping", ["ping"]])
def test_op_must_be_a_string(op: object) -> None:
    value: dict[str, object] = {"id": 3}
    if op is not None:
        value["op"] = op
    result = decode(value)
    assert isinstance(result, InvalidFrame)
    assert result.id == 3
    assert result.error.code == "bad_request"
    assert "'op'" in result.error.message


@pytest.mark.parametrize("request_id", [None, -1, "7", True, 1.0, b"\x01"])
def test_id_must_be_an_unsigned_integer(request_id: object) -> None:
    value: dict[str, object] = {"op": "ping"}
    if request_id is not None:
        value["id"] = request_id
    result = decode(value)
    assert isinstance(result, InvalidFrame)
    assert result.id is None  # no usable id: the error frame carries none
    assert result.error.code == "bad_request"
    assert "'id'" in result.error.message


def test_largest_id_is_echoed() -> None:
    assert decode({"op": "ping", "id": 2**64 - 1}) == frames.Ping(id=2**64 - 1)


def test_decode_request_rejects_non_maps() -> None:
    from minibroker.protocol.codec import ProtocolError

    with pytest.raises(ProtocolError):
        decode_request([1, 2])
