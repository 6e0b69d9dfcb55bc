"""AMQP 0-9-1 frames: cut from the byte stream, and built for sending.

A frame is ``type u8 | channel u16 | size u32 | payload | 0xCE``. pamqp
defines the methods and encodes them; :mod:`minibroker.amqp.decoding`
decodes them (in time linear in the frame's size, unlike pamqp's decoder).
This module does the part a codec leaves to its caller: finding frame
boundaries in a stream, refusing a frame larger than the negotiated
``frame_max`` before buffering it (501 FRAME_ERROR), and building content
(header + body frames split to ``frame_max``). Content headers are kept as
raw property bytes, so a message's properties travel from publisher to
consumer byte for byte, whatever field-table dialect the publisher's
client writes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final, NamedTuple, TypeVar

from pamqp import base, commands
from pamqp import encode as pamqp_encode

from minibroker.amqp import decoding
from minibroker.amqp.errors import FRAME_ERROR, NOT_IMPLEMENTED, SYNTAX_ERROR, HardError

PROTOCOL_HEADER: Final = b"AMQP\x00\x00\x09\x01"
METHOD: Final = 1
HEADER: Final = 2
BODY: Final = 3
HEARTBEAT: Final = 8
#: The frame types AMQP 0-9-1 defines; any other is a 501 FRAME_ERROR.
FRAME_TYPES: Final = frozenset((METHOD, HEADER, BODY, HEARTBEAT))
FRAME_END: Final = 0xCE
#: type, channel, size.
_PREFIX: Final = struct.Struct(">BHI")
_PREFIX_SIZE: Final = 7
#: Bytes a frame adds around its payload (prefix and end octet).
FRAME_OVERHEAD: Final = 8
#: Smallest frame_max a peer may ask for (the spec's frame-min-size).
MIN_FRAME_MAX: Final = 4096
_CONTENT_HEADER: Final = struct.Struct(">HHQ")
_METHOD_INDEX: Final = struct.Struct(">I")
_Method = TypeVar("_Method", bound=base.Frame)
HEARTBEAT_FRAME: Final = b"\x08\x00\x00\x00\x00\x00\x00\xce"
#: Deepest nesting of tables and arrays accepted in a field table (header
#: values, arguments). Far beyond any real use, and far below what would make
#: a recursive codec (pamqp's encoder, when dead-lettering re-encodes) run out
#: of stack: a deeper table is a 502 SYNTAX_ERROR with this in its text.
MAX_TABLE_DEPTH: Final = decoding.MAX_DEPTH


#: One frame as cut from the stream: (type, channel, payload). A plain tuple,
#: not a named one: one is made per frame, three per published message.
RawFrame = tuple[int, int, bytes]


class FrameReader:
    """Buffers received bytes and yields whole frames, checking sizes first.

    The buffer is an immutable ``bytes``: a chunk that arrives when nothing is
    left over is kept as it is, and a payload is one slice of it (no copy into
    and out of a bytearray). What is left over is at most one frame, which
    ``frame_max`` bounds, so joining it with the next chunk stays cheap.
    """

    def __init__(self, frame_max: int) -> None:
        self.frame_max = frame_max
        self._buffer = b""
        self._pos = 0

    def receive_data(self, data: bytes | bytearray) -> None:
        rest = len(self._buffer) - self._pos
        if not rest:
            self._buffer = bytes(data)
        elif data:
            self._buffer = self._buffer[self._pos :] + data
        else:
            self._buffer = self._buffer[self._pos :]
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet cut into frames."""
        return len(self._buffer) - self._pos

    @property
    def pending_frame_bytes(self) -> int:
        """Bytes held until the next frame is complete: its declared size once its
        prefix is in (what the server reserves of its partial-frame budget)."""
        buffered = len(self._buffer) - self._pos
        if buffered < _PREFIX_SIZE:
            return buffered
        size: int = _PREFIX.unpack_from(self._buffer, self._pos)[2]
        return max(size + FRAME_OVERHEAD, buffered)

    def discard(self) -> None:
        """Drop everything buffered (the connection is refused or gone)."""
        self._buffer = b""
        self._pos = 0

    def take_protocol_header(self) -> bytes | None:
        """The 8 bytes a connection opens with, once they are all here."""
        if self.buffered < 8:
            return None
        header = self._buffer[self._pos : self._pos + 8]
        self._pos += 8
        return header

    def frames(self) -> Iterator[RawFrame]:
        """Every complete frame buffered; raises HardError(501) on a broken or oversized one."""
        buffer = self._buffer
        length = len(buffer)
        unpack = _PREFIX.unpack_from
        pos = self._pos
        while length - pos >= _PREFIX_SIZE:
            kind, channel, size = unpack(buffer, pos)
            if size + FRAME_OVERHEAD > self.frame_max:
                raise HardError(
                    FRAME_ERROR,
                    f"frame of {size + FRAME_OVERHEAD} bytes exceeds frame_max {self.frame_max}",
                )
            end = pos + _PREFIX_SIZE + size
            if length <= end:
                return
            if buffer[end] != FRAME_END:
                raise HardError(FRAME_ERROR, f"frame does not end with 0xCE (type {kind})")
            payload = buffer[pos + _PREFIX_SIZE : end]
            pos = self._pos = end + 1
            yield kind, channel, payload
            if self._buffer is not buffer:
                return  # discarded or refilled meanwhile: a new frames() call goes on


def decode_method(payload: bytes) -> base.Frame:
    """A method frame's payload as a pamqp command.

    540 NOT_IMPLEMENTED for a method this codec does not know, 502
    SYNTAX_ERROR for arguments that do not decode.
    """
    if len(payload) < 4:
        raise HardError(SYNTAX_ERROR, "method frame too short")
    index: int = _METHOD_INDEX.unpack_from(payload)[0]
    fast = _FAST_DECODERS.get(index)
    if fast is not None:
        try:
            return fast(payload)
        except (struct.error, IndexError, UnicodeDecodeError):
            pass  # let pamqp decode it and name the problem
    method_class = commands.INDEX_MAPPING.get(index)
    if method_class is None:
        raise HardError(
            NOT_IMPLEMENTED, f"unknown method class {index >> 16}, method {index & 0xFFFF}"
        )
    method: base.Frame = method_class()
    try:
        decoding.unmarshal_method(method, payload)
    except decoding.TooDeep:
        raise HardError(SYNTAX_ERROR, _too_deep_text(method.name), index) from None
    except (ValueError, struct.error) as exc:
        raise HardError(SYNTAX_ERROR, f"cannot decode {method.name}: {exc!r}", index) from None
    return method


def decode_content_header(payload: bytes) -> tuple[int, int, bytes]:
    """A content header frame's (class id, body size, raw property bytes, flags included).

    A plain tuple: one is decoded per published message.
    """
    if len(payload) < 14:
        raise HardError(FRAME_ERROR, "content header frame too short")
    class_id, _, body_size = _CONTENT_HEADER.unpack_from(payload)
    return class_id, body_size, payload[12:]


def decode_properties(raw: bytes) -> commands.Basic.Properties:
    """Raw property bytes (flags first) as pamqp's Basic.Properties."""
    try:
        return decoding.properties(raw)
    except decoding.TooDeep:
        raise HardError(SYNTAX_ERROR, _too_deep_text("the content header")) from None
    except (ValueError, struct.error) as exc:
        raise HardError(SYNTAX_ERROR, f"cannot decode content header: {exc!r}") from None


def _too_deep_text(where: str) -> str:
    return f"field table in {where} nested more than {MAX_TABLE_DEPTH} levels deep"


class RoutingProperties(NamedTuple):
    """The properties routing reads, found in raw property bytes without decoding them all."""

    reply_to: str | None
    #: Where the reply_to shortstr (its length octet included) sits in the raw bytes.
    reply_to_span: tuple[int, int]
    expiration: str | None
    priority: int | None


_LONG: Final = struct.Struct(">I")


def routing_properties(raw: bytes) -> RoutingProperties | None:
    """reply_to, expiration and priority, read straight from the property bytes.

    None when this shortcut does not apply (a non-empty headers table, which
    routing needs decoded; a user_id, which is checked; a second flags word;
    bytes that do not add up):
    then :func:`decode_properties` decodes everything, and names any error.
    Clients send some properties with every message (aio-pika an empty
    headers table, a delivery mode and a priority), so most publishes take
    this path instead of pamqp's generic decoder.
    """
    try:
        flags = (raw[0] << 8) | raw[1]
        if flags & 0x0011:  # a second flags word, or a user_id
            return None
        pos = 2
        if flags & 0x8000:  # content_type
            pos += 1 + raw[pos]
        if flags & 0x4000:  # content_encoding
            pos += 1 + raw[pos]
        if flags & 0x2000:  # headers
            if _LONG.unpack_from(raw, pos)[0]:
                return None
            pos += 4
        if flags & 0x1000:  # delivery_mode
            pos += 1
        priority = None
        if flags & 0x0800:
            priority = raw[pos]
            pos += 1
        if flags & 0x0400:  # correlation_id
            pos += 1 + raw[pos]
        reply_to = None
        span = (0, 0)
        if flags & 0x0200:
            end = pos + 1 + raw[pos]
            reply_to = raw[pos + 1 : end].decode()
            span = (pos, end)
            pos = end
        expiration = None
        if flags & 0x0100:
            end = pos + 1 + raw[pos]
            expiration = raw[pos + 1 : end].decode()
            pos = end
        if pos > len(raw):
            return None
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return RoutingProperties(reply_to, span, expiration, priority)


def replace_span(raw: bytes, span: tuple[int, int], value: str) -> bytes:
    """``raw`` with the shortstr at ``span`` replaced by ``value`` (the rest byte for byte)."""
    return raw[: span[0]] + _shortstr(value) + raw[span[1] :]


def encode_properties(properties: commands.Basic.Properties) -> bytes:
    return properties.marshal()


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return b"".join((_PREFIX.pack(kind, channel, len(payload)), payload, b"\xce"))


def method_frame(channel: int, method: base.Frame) -> bytes:
    """A method frame, its arguments encoded as pamqp's ``marshal`` encodes them,
    without its ``validate``: that refuses queue and exchange names with
    characters outside ``[a-zA-Z0-9-_.:@#,/+ ]``, which RabbitMQ and
    minibroker accept (a Queue.DeclareOk for ``tasks$1`` would be a 541)."""
    return _frame(METHOD, channel, _METHOD_INDEX.pack(method.index) + _arguments(method))


def _arguments(method: base.Frame) -> bytes:
    """``method``'s arguments in wire order; bits packed eight to an octet."""
    output: list[bytes] = []
    bits = -1  # no octet of bits open
    offset = 0
    for name in method.__slots__:
        kind = method.amqp_type(name)
        value = getattr(method, name, 0)
        if kind == "bit":
            if bits < 0:
                bits, offset = 0, 0
            bits = pamqp_encode.bit(value, bits, offset)
            offset += 1
            if offset == 8:
                output.append(pamqp_encode.octet(bits))
                bits = -1
            continue
        if bits >= 0:
            output.append(pamqp_encode.octet(bits))
            bits = -1
        output.append(pamqp_encode.by_type(value, kind))
    if bits >= 0:
        output.append(pamqp_encode.octet(bits))
    return b"".join(output)


def unchecked(method_class: type[_Method], **arguments: object) -> _Method:
    """``method_class`` with ``arguments`` (every one of them), built without
    pamqp's ``validate``, for an answer that names a queue or an exchange
    (see :func:`method_frame`)."""
    assert set(arguments) == set(method_class.__slots__), arguments
    method = method_class.__new__(method_class)
    for name, value in arguments.items():
        setattr(method, name, value)
    return method


def content_frames(channel: int, properties: bytes, body: bytes, frame_max: int) -> bytes:
    """The header frame and as many body frames as ``body`` needs under ``frame_max``."""
    header = _CONTENT_HEADER.pack(60, 0, len(body)) + properties
    parts = [_frame(HEADER, channel, header)]
    step = frame_max - FRAME_OVERHEAD
    for start in range(0, len(body), step):
        parts.append(_frame(BODY, channel, body[start : start + step]))
    return b"".join(parts)


# --- the hot path, by hand ------------------------------------------------------
#
# Measured (tests' in-process loop, benchmarks W1): pamqp's generic marshal and
# unmarshal (a getattr and a type lookup per field, a regex check of names) were
# the largest cost per message. The methods that come once per message are
# encoded and decoded here directly; the rest stay with pamqp.

_PUBLISH_INDEX: Final = commands.Basic.Publish.index
_ACK_INDEX: Final = commands.Basic.Ack.index
_LONGLONG: Final = struct.Struct(">Q")
_ACK_ARGS: Final = struct.Struct(">QB")
_ACK_SIZE: Final = 4 + _ACK_ARGS.size  # the method index, then the arguments


def _shortstr(value: str) -> bytes:
    data = value.encode()
    if len(data) > 255:
        raise ValueError(f"shortstr of {len(data)} bytes")
    return bytes((len(data),)) + data


#: The end of a method frame and the start of a content header frame (up to the properties).
_HEADER_START: Final = struct.Struct(">BBHIHHQ")
#: The end of a content header frame and the start of a body frame.
_BODY_START: Final = struct.Struct(">BBHI")
#: Encoded (exchange, routing key) pairs of deliveries, by pair (bounded, see below).
_ADDRESSES: dict[tuple[str, str], bytes] = {}
_ADDRESSES_MAX: Final = 1024


def deliver_method_head(consumer_tag: str) -> bytes:
    """Basic.Deliver's payload up to its delivery tag: the same for all of a consumer's."""
    return b"\x00\x3c\x00\x3c" + _shortstr(consumer_tag)


def encoded_address(exchange: str, routing_key: str) -> bytes:
    """Exchange and routing key as Basic.Deliver ends (cached: most messages share a few)."""
    key = (exchange, routing_key)
    found = _ADDRESSES.get(key)
    if found is None:
        found = _shortstr(exchange) + _shortstr(routing_key)
        if len(_ADDRESSES) >= _ADDRESSES_MAX:
            _ADDRESSES.clear()
        _ADDRESSES[key] = found
    return found


def delivery_frames(
    channel: int,
    method_head: bytes,
    delivery_tag: int,
    redelivered: bool,
    address: bytes,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> bytes:
    """Basic.Deliver, its content header and body, built in one join (once per message).

    ``method_head`` is :func:`deliver_method_head`, ``address`` :func:`encoded_address`.
    """
    size = len(body)
    method = (
        _PREFIX.pack(METHOD, channel, len(method_head) + 9 + len(address)),
        method_head,
        _ACK_ARGS.pack(delivery_tag, 1 if redelivered else 0),
        address,
        _HEADER_START.pack(FRAME_END, HEADER, channel, 12 + len(properties), 60, 0, size),
        properties,
    )
    if 0 < size <= frame_max - FRAME_OVERHEAD:
        return b"".join((*method, _BODY_START.pack(FRAME_END, BODY, channel, size), body, b"\xce"))
    parts = [*method, b"\xce"]
    step = frame_max - FRAME_OVERHEAD
    for start in range(0, size, step):
        parts.append(_frame(BODY, channel, body[start : start + step]))
    return b"".join(parts)


#: The content header frame's start, up to its body size.
_HEADER_HEAD: Final = struct.Struct(">BBHIHH")


class DeliveryRun:
    """Deliveries of messages that share a channel, a consumer, an address and
    properties (a run of one fetch): :func:`delivery_frames`'s bytes, with the
    parts they share packed once.

    ``add`` appends one delivery's pieces to ``out`` (joined once for the
    whole fetch): the frames before the delivery tag, the tag, what follows
    up to the body size, the size and properties (packed once per size), the
    body and the frame end.
    """

    __slots__ = (
        "_after_tag",
        "_before_tag",
        "_size",
        "_tail",
        "address",
        "channel",
        "frame_max",
        "method_head",
        "properties",
    )

    def __init__(
        self, channel: int, method_head: bytes, address: bytes, properties: bytes, frame_max: int
    ) -> None:
        self.channel, self.method_head, self.address = channel, method_head, address
        self.properties, self.frame_max = properties, frame_max
        self._before_tag = (
            _PREFIX.pack(METHOD, channel, len(method_head) + 9 + len(address)) + method_head
        )
        self._after_tag = address + _HEADER_HEAD.pack(
            FRAME_END, HEADER, channel, 12 + len(properties), 60, 0
        )
        self._size = -1
        self._tail = b""

    def add(self, out: list[bytes], delivery_tag: int, redelivered: bool, body: bytes) -> None:
        size = len(body)
        if not 0 < size <= self.frame_max - FRAME_OVERHEAD:  # empty, or split into frames
            out.append(
                delivery_frames(
                    self.channel,
                    self.method_head,
                    delivery_tag,
                    redelivered,
                    self.address,
                    self.properties,
                    body,
                    self.frame_max,
                )
            )
            return
        if size != self._size:
            self._size = size
            self._tail = (
                _LONGLONG.pack(size)
                + self.properties
                + _BODY_START.pack(FRAME_END, BODY, self.channel, size)
            )
        out += (
            self._before_tag,
            _ACK_ARGS.pack(delivery_tag, 1 if redelivered else 0),
            self._after_tag,
            self._tail,
            body,
            b"\xce",
        )


def confirm_frame(channel: int, delivery_tag: int, ok: bool, *, multiple: bool = False) -> bytes:
    """Basic.Ack (or Basic.Nack, requeue=false) of a publish, encoded by hand.

    The same size whatever the arguments: a coalesced confirm replaces the
    one it extends in place.
    """
    method = b"\x00\x3c\x00\x50" if ok else b"\x00\x3c\x00\x78"
    return _frame(METHOD, channel, method + _ACK_ARGS.pack(delivery_tag, 1 if multiple else 0))


def _read_shortstr(payload: bytes, pos: int) -> tuple[str, int]:
    size = payload[pos]
    end = pos + 1 + size
    if end > len(payload):
        raise IndexError("shortstr runs past the frame")
    return payload[pos + 1 : end].decode(), end


def _decode_publish(payload: bytes) -> base.Frame:
    exchange, pos = _read_shortstr(payload, 6)  # after the index and the ticket
    routing_key, pos = _read_shortstr(payload, pos)
    bits = payload[pos]
    if pos + 1 != len(payload):
        raise IndexError("bytes after the arguments")  # decode_method names them
    method = commands.Basic.Publish.__new__(commands.Basic.Publish)
    method.ticket = 0
    method.exchange = exchange
    method.routing_key = routing_key
    method.mandatory = bool(bits & 1)
    method.immediate = bool(bits & 2)
    return method


#: Decoded Basic.Publish payloads (bounded, see below): a publisher sends the
#: same few (exchange, routing key, flags) over and over.
_PUBLISHES: dict[bytes, commands.Basic.Publish] = {}
_PUBLISHES_MAX: Final = 1024


def decode_publish(payload: bytes) -> commands.Basic.Publish | None:
    """A Basic.Publish method frame's payload decoded by hand; None when it does
    not decode (then :func:`decode_method` names the problem).

    Equal payloads give the same object, so it is read-only to its callers.
    """
    method = _PUBLISHES.get(payload)
    if method is not None:
        return method
    try:
        decoded = _decode_publish(payload)
    except (struct.error, IndexError, UnicodeDecodeError):
        return None
    assert isinstance(decoded, commands.Basic.Publish)
    if len(_PUBLISHES) >= _PUBLISHES_MAX:
        _PUBLISHES.clear()
    _PUBLISHES[payload] = decoded
    return decoded


def _decode_ack(payload: bytes) -> base.Frame:
    if len(payload) != _ACK_SIZE:
        raise IndexError("not a Basic.Ack's size")  # decode_method names the problem
    delivery_tag, bits = _ACK_ARGS.unpack_from(payload, 4)
    method = commands.Basic.Ack.__new__(commands.Basic.Ack)
    method.delivery_tag = delivery_tag
    method.multiple = bool(bits & 1)
    return method


_FAST_DECODERS: Final = {_PUBLISH_INDEX: _decode_publish, _ACK_INDEX: _decode_ack}
