"""minibroker.amqp.decoding against pamqp's decoder: the same values, in linear time."""

from __future__ import annotations

import struct
from typing import Any, SupportsIndex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands, decode, frame
from pamqp import header as pamqp_header

from minibroker.amqp import decoding, framing
from minibroker.amqp.errors import HardError


def _long(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _short(data: bytes) -> bytes:
    return bytes((len(data),)) + data


_text = st.text(max_size=8).map(str.encode).filter(lambda b: len(b) < 256)
_scalars = st.one_of(
    st.builds(lambda b: b"t" + bytes((b,)), st.integers(0, 255)),
    st.builds(lambda n: b"b" + struct.pack(">b", n), st.integers(-128, 127)),
    st.builds(lambda n: b"B" + struct.pack(">B", n), st.integers(0, 255)),
    st.builds(lambda n: b"s" + struct.pack(">h", n), st.integers(-(2**15), 2**15 - 1)),
    st.builds(lambda n: b"u" + struct.pack(">H", n), st.integers(0, 2**16 - 1)),
    st.builds(lambda n: b"I" + struct.pack(">i", n), st.integers(-(2**31), 2**31 - 1)),
    st.builds(lambda n: b"i" + struct.pack(">I", n), st.integers(0, 2**32 - 1)),
    st.builds(lambda n: b"l" + struct.pack(">q", n), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda n: b"L" + struct.pack(">q", n), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda b: b"f" + b, st.binary(min_size=4, max_size=4)),
    st.builds(lambda b: b"d" + b, st.binary(min_size=8, max_size=8)),
    st.builds(
        lambda p, n: b"D" + struct.pack(">BI", p, n), st.integers(0, 30), st.integers(0, 2**32 - 1)
    ),
    st.builds(lambda n: b"T" + struct.pack(">Q", n), st.integers(0, 2**40)),
    st.builds(lambda b: b"S" + _long(b), st.binary(max_size=8) | _text),
    st.builds(lambda b: b"x" + _long(b), st.binary(max_size=8)),
    st.just(b"V"),
    st.just(b"\x00"),
)


def _table_of(values: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    entries = st.lists(st.tuples(_text, values), max_size=6)
    return entries.map(lambda es: _long(b"".join(_short(k) + v for k, v in es)))


_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        _table_of(inner).map(lambda t: b"F" + t),
        st.lists(inner, max_size=6).map(lambda vs: b"A" + _long(b"".join(vs))),
    ),
    max_leaves=30,
)
_tables = _table_of(_values)


@settings(max_examples=200, deadline=None)
@given(_tables)
def test_tables_decode_as_pamqp_decodes_them(raw: bytes) -> None:
    ours, end = decoding.field_table(raw)
    assert end == len(raw)
    assert repr(ours) == repr(decode.field_table(raw)[1])  # repr: types count, and nan == nan


def _damaged(raw: bytes) -> st.SearchStrategy[bytes]:
    """``raw`` cut short, or with one byte changed."""
    cut = st.integers(0, len(raw)).map(lambda n: raw[:n])
    flipped = st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)).map(
        lambda p: raw[: p[0]] + bytes((p[1],)) + raw[p[0] + 1 :]
    )
    return cut | flipped


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=64), _tables.flatmap(_damaged)))
def test_broken_tables_are_refused_or_read_as_pamqp_reads_them(raw: bytes) -> None:
    try:
        ours = decoding.field_table(raw)[0]
    except ValueError:
        return  # stricter than pamqp is fine; a crash of another kind is not
    assert repr(ours) == repr(decode.field_table(raw)[1])


_shortstr = st.text(max_size=10).filter(lambda s: len(s.encode()) < 256)


_string = _text.map(_short)
#: Each property in wire order: (flag, strategy for its encoded value).
_PROPERTIES = [
    (0x8000, _string),  # content_type
    (0x4000, _string),  # content_encoding
    (0x2000, _tables),  # headers
    (0x1000, st.integers(0, 255).map(lambda n: bytes((n,)))),  # delivery_mode
    (0x0800, st.integers(0, 255).map(lambda n: bytes((n,)))),  # priority
    (0x0400, _string),  # correlation_id
    (0x0200, _string),  # reply_to
    (0x0100, _string),  # expiration
    (0x0080, _string),  # message_id
    (0x0040, st.integers(0, 2**40).map(lambda n: struct.pack(">Q", n))),  # timestamp
    (0x0020, _string),  # type
    (0x0010, _string),  # user_id
    (0x0008, _string),  # app_id
    (0x0004, _string),  # cluster_id
]


@st.composite
def _raw_properties(draw: st.DrawFn) -> bytes:
    flags = 0
    fields = []
    for flag, values in _PROPERTIES:
        if draw(st.booleans()):
            flags |= flag
            fields.append(draw(values))
    return struct.pack(">H", flags) + b"".join(fields)


@settings(max_examples=100, deadline=None)
@given(_raw_properties())
def test_properties_decode_as_pamqp_decodes_them(raw: bytes) -> None:
    theirs = pamqp_header.ContentHeader()
    theirs.unmarshal(struct.pack(">HHQ", 60, 0, 0) + raw)
    assert repr(_fields(decoding.properties(raw))) == repr(_fields(theirs.properties))


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name, None) for name in value.__slots__}


def _methods() -> list[Any]:
    """One instance of every method pamqp knows (its defaults), plus ones with every argument."""
    found = []
    for method_class in commands.INDEX_MAPPING.values():
        try:
            method = method_class()
            frame.marshal(method, 1)
        except (TypeError, ValueError):
            continue  # needs arguments pamqp has no default for
        found.append(method)
    found += [
        commands.Queue.Declare(0, "q", True, True, False, True, True, {"x-max-length": 3}),
        commands.Basic.Nack(2**63 - 1, True, False),
        commands.Basic.Consume(0, "q", "tag", True, False, True, False, {"x-priority": 5}),
        commands.Exchange.Declare(0, "e", "topic", False, True, True, False, True, {"a": [1]}),
        commands.Connection.StartOk({"product": "p", "caps": {"x": True}}, "PLAIN", "\0u\0p"),
        commands.Connection.Close(320, "bye", 10, 40),
    ]
    return found


@pytest.mark.parametrize("method", _methods(), ids=lambda m: m.name)
def test_every_method_decodes_as_pamqp_decodes_it(method: Any) -> None:
    payload = frame.marshal(method, 1)[7:-1]
    assert _fields(framing.decode_method(payload)) == _fields(
        frame.unmarshal(frame.marshal(method, 1))[2]
    )


@settings(max_examples=100, deadline=None)
@given(
    st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(), _shortstr, _tables
)
def test_queue_declare_bits_and_arguments_decode_as_pamqp(
    passive: bool,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    nowait: bool,
    name: str,
    arguments: bytes,
) -> None:
    head = struct.pack(">IH", commands.Queue.Declare.index, 0) + _short(name.encode())
    bits = passive | durable << 1 | exclusive << 2 | auto_delete << 3 | nowait << 4
    payload = head + bytes((bits,)) + arguments
    theirs = commands.Queue.Declare()
    theirs.unmarshal(payload[4:])
    assert repr(_fields(framing.decode_method(payload))) == repr(_fields(theirs))


class _CountingBytes(bytes):
    """Bytes that count what their slices copy (the decoder's work is bounded by it)."""

    copied = 0

    def __getitem__(self, key: SupportsIndex | slice) -> Any:  # type: ignore[override]
        value = super().__getitem__(key)
        if isinstance(key, slice):
            _CountingBytes.copied += len(value)
        return value


def test_a_table_of_many_small_entries_is_decoded_copying_each_byte_at_most_once() -> None:
    """pamqp's decoder copies the rest of the buffer for each entry (run on
    this table it copies over 1 GB: 360 ms of CPU for one 120 kB frame);
    the decoder slices only keys and string values, so what it copies is
    bounded by the frame's size, whatever the number of entries."""
    entries = b"\x00V" * 30_000 + b"\x01kA" + _long(b"V" * 30_000) + b"\x01sS" + _long(b"x" * 99)
    table = _CountingBytes(_long(entries))
    _CountingBytes.copied = 0
    headers, _ = decoding.field_table(table)
    assert headers == {"": None, "k": [None] * 30_000, "s": "x" * 99}
    assert _CountingBytes.copied <= len(table)

    raw = _CountingBytes(b"\x20\x00" + table)
    _CountingBytes.copied = 0
    assert decoding.properties(raw).headers == headers
    assert _CountingBytes.copied <= len(raw)

    arguments = _long(b"".join(_short(b"k%d" % i) + b"bx" for i in range(10_000)))
    payload = _CountingBytes(
        struct.pack(">IH", commands.Queue.Declare.index, 0) + b"\x01q\x00" + arguments
    )
    _CountingBytes.copied = 0
    method = commands.Queue.Declare()
    decoding.unmarshal_method(method, payload)
    assert len(method.arguments) == 10_000
    assert _CountingBytes.copied <= len(payload)


def test_frames_are_decoded_by_the_linear_decoder() -> None:
    """framing reads tables with ``decoding``, not pamqp: a short string that
    runs past its table is refused (pamqp would read what is there)."""
    table = _long(b"\x01kS" + _long(b"abc")[:-1])  # the string's last byte is missing
    assert decode.field_table(table + b"\x00")[1] == {"k": "ab\x00"}
    with pytest.raises(HardError, match="cannot decode content header"):
        framing.decode_properties(b"\x20\x00" + table + b"\x00")
    declare = struct.pack(">IH", commands.Queue.Declare.index, 0) + b"\x01q\x00" + table
    with pytest.raises(HardError, match=r"cannot decode Queue\.Declare"):
        framing.decode_method(declare + b"\x00")


def test_tables_nested_past_the_limit_are_a_syntax_error() -> None:
    def nested(levels: int) -> bytes:
        table = _long(b"")
        for _ in range(levels - 1):
            table = _long(b"\x01nF" + table)
        return table

    assert framing.decode_properties(b"\x20\x00" + nested(framing.MAX_TABLE_DEPTH)).headers
    with pytest.raises(HardError, match="nested more than 100 levels"):
        framing.decode_properties(b"\x20\x00" + nested(framing.MAX_TABLE_DEPTH + 1))
    arrays = b"A" + _long(b"")
    for _ in range(framing.MAX_TABLE_DEPTH - 2):
        arrays = b"A" + _long(arrays)
    assert framing.decode_properties(b"\x20\x00" + _long(b"\x01a" + arrays)).headers
    with pytest.raises(HardError, match="nested more than 100 levels"):
        framing.decode_properties(b"\x20\x00" + _long(b"\x01a" + b"A" + _long(arrays)))
