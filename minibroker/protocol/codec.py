"""Bytes <-> frames, sans-I/O (in the style of h11): the one place frames
are decoded from bytes and encoded to bytes.

A frame is a 4-byte big-endian length followed by that many bytes holding
one msgpack value. ``FrameDecoder.receive_data(chunk)`` accepts arbitrary
slices of the byte stream; ``frames()`` then yields every complete frame.
Nothing here touches a socket, so the same decoder serves the Trio server,
the asyncio and blocking clients, and the Hypothesis tests.

Every frame the server sends is built here from its frame class (frames.py).
``encode(frame)`` is the generic path: the frame's fields in declaration
order behind ``op``, optional fields left out when nil (docs/protocol.md,
"nil"). The other encoders are the same frames on a shorter path, for the
frames sent per request or per message; each gives the bytes ``encode``
gives for the same frame, which tests/protocol/test_codec_encoders.py checks on
arbitrary frames:

* :func:`ok` (and :func:`ok_of`, the same without the frame object): the
  answer to every request;
* :func:`records` and :func:`req`: the log tail and responder pushes;
* :func:`topic_message` and :func:`msg`: the fan-out path. A topic message
  is packed once, whatever the number of subscriptions it goes to, and each
  subscription's ``msg`` frame joins those bytes behind a hand-written
  msgpack header (map of 3, ``op``, ``sub``, ``messages``, array length);
  :func:`bare_message` and :func:`compact_msg` do the same for compact
  subscriptions, whose messages without headers travel as bare bodies.

Error, ``end`` and ``bye`` frames always fit the frame limit. An error
message often echoes what the client sent: an unknown op name, a name that
breaks the rules, a value out of range. Echoed whole, a request of 16 MiB
whose ``op`` is 16 MiB of text got an answer *larger* than the 16 MiB the
server promises never to send (issue 14 item 8), and the client's decoder
dropped the connection over it. So every string in an error is cut to
:data:`MAX_ERROR_TEXT_BYTES` of UTF-8 (at a character boundary, with a mark
saying how much went), and ``details`` are left out altogether if the frame
would still not fit: the code and the message are the error, the details
only extras. The smallest frame limit the server accepts (1024 bytes) leaves
room for a message of that size plus the envelope.

Two kinds of trouble are kept apart because they call for different cures:

* ``ProtocolError`` — the byte stream itself is broken (a length over the
  limit, bytes that are not msgpack, a frame that is not a map). The stream
  cannot be resynchronised, so the connection must be closed.
* ``InvalidFrame`` — a well-framed map that is not a valid request (unknown
  op, missing or mistyped field). The next frame is still readable, so the
  server answers with an error for that request id and carries on.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator, Mapping
from typing import Any, Final

import msgpack

from minibroker.errors import BadFrame, BadRequest, BrokerError, TooLarge, UnknownOp
from minibroker.protocol import frames
from minibroker.protocol.frame_class import Frame
from minibroker.protocol.frames import DECODERS, REQUESTS
from minibroker.protocol.schema import to_wire
from minibroker.value_class import Value

#: (decoded map, field path prefix) -> request frame; BrokerError if invalid.
Decoder = Callable[[dict[Any, Any], str], object]

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
#: Default ceiling for one frame (length prefix excluded): 16 MiB.
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
#: Ceiling for a frame sent before a successful hello. A hello is a few
#: hundred bytes (a token and a namespace name at most), and anyone who can
#: connect may send it, so a larger frame is refused on its length prefix:
#: an unauthenticated peer cannot make the server buffer or decode 16 MiB.
HELLO_MAX_FRAME_BYTES: Final = 64 * 1024
#: Smallest bound on the elements of one msgpack array or map in a request.
MIN_CONTAINER_LEN: Final = 1024
#: Bytes of any response or push frame besides the items it carries: the
#: map header, ``op``, ``id`` or ``sub``, ``result``, ``count``,
#: ``next_offset`` and the msgpack header of the item array or ``bin``, each
#: at its widest encoding (a ``read`` answer's is 76 bytes, the largest).
#: Whoever sizes a batch counts its items; this covers the rest.
ENVELOPE_BYTES: Final = 128
#: Bytes of a frame kept for everything around one message body when
#: ``max_message_bytes`` is derived from the frame limit: the envelope,
#: the per-item fields, names, a record key and headers.
MESSAGE_RESERVE_BYTES: Final = 4096


def frame_payload_budget(max_frame_bytes: int) -> int:
    """Bytes of items one outgoing frame may carry under ``max_frame_bytes``.

    Every batch the broker sends (a ``read`` answer, a ``fetch`` answer, a
    ``records``/``msg``/``req`` push) is cut to this many item bytes, so the
    frame around it stays within the limit the client was told in hello.
    Never below 1: a batch always holds at least one item.
    """
    return max(max_frame_bytes - ENVELOPE_BYTES, 1)


def message_limit_for(max_frame_bytes: int) -> int:
    """The largest ``max_message_bytes`` that still fits one outgoing frame.

    A single message is never split, so it must fit in a frame together with
    its envelope, key, headers and names: the frame limit minus
    ``MESSAGE_RESERVE_BYTES`` (minus half the frame for frames under twice
    the reserve, which only tests use).
    """
    return max_frame_bytes - min(MESSAGE_RESERVE_BYTES, max_frame_bytes // 2)


def container_limit_for(max_batch: int) -> int:
    """Most elements one array or map of a request may hold: twice ``max_batch``.

    The longest legitimate container is a batch, and a batch somewhat over
    ``max_batch`` still reaches its handler and gets the more helpful
    ``bad_request``. Anything longer is refused while it is being decoded,
    before millions of objects are built (one byte of msgpack can become a
    64-byte Python dict, so an unchecked 16 MiB array of empty maps would
    cost a gigabyte).
    """
    return max(2 * max_batch, MIN_CONTAINER_LEN)


class ProtocolError(BadFrame):
    """The byte stream is malformed; the connection has to be closed."""


class FrameTooLarge(ProtocolError):
    """A length prefix above the limit, refused before the body is read.

    Still a ``ProtocolError`` (the stream cannot be resynchronised without
    reading the body), but with the ``too_large`` code of the error
    vocabulary, so the peer learns to raise the limit or split its batch.
    """

    code = "too_large"


class InvalidFrame(Value, frozen=True):
    """A readable frame that is not a valid request; answer ``error`` and go on.

    ``id`` is the request id if the frame carried a usable one, else None.
    """

    id: int | None
    error: BrokerError


class RawFrameDecoder:
    """Splits the stream into frames and unpacks each to a plain msgpack value.

    The maximum size is checked as soon as the 4 length bytes are in, so an
    oversized frame is refused before its body is buffered.
    ``max_container_len`` (None: no bound but the frame's own length) bounds
    every array and map while the body is decoded.
    """

    __slots__ = ("_buffer", "_max_container_len", "_max_frame_bytes")

    def __init__(
        self,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        *,
        max_container_len: int | None = None,
    ) -> None:
        self._buffer = bytearray()
        self._max_frame_bytes = max_frame_bytes
        self._max_container_len = max_container_len

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)

    @property
    def pending_frame_bytes(self) -> int:
        """Bytes this buffer will hold before its first frame is complete.

        The declared size of the frame at the head of the buffer (length
        prefix included) once its prefix is in, or what is buffered if that
        is more: what the server reserves for a connection's partial frame.
        """
        buf = self._buffer
        if len(buf) < HEADER_SIZE:
            return len(buf)
        declared: int = HEADER_SIZE + HEADER.unpack_from(buf, 0)[0]
        return max(declared, len(buf))

    def discard(self) -> None:
        """Drop everything buffered (the connection is gone or refused)."""
        self._buffer = bytearray()

    @property
    def max_frame_bytes(self) -> int:
        """The largest frame accepted; a client raises it to what the server advertises."""
        return self._max_frame_bytes

    @max_frame_bytes.setter
    def max_frame_bytes(self, value: int) -> None:
        # Takes effect from the next frame on, even within a chunk being decoded.
        self._max_frame_bytes = value

    def receive_data(self, data: bytes | bytearray) -> None:
        self._buffer += data
        if len(self._buffer) >= HEADER_SIZE:
            # Refuse an oversized frame now, even if its body never arrives.
            self._check_length(HEADER.unpack_from(self._buffer, 0)[0])

    def _check_length(self, length: int) -> None:
        if length > self._max_frame_bytes:
            raise FrameTooLarge(
                f"frame of {length} bytes exceeds the limit of {self._max_frame_bytes} bytes",
                limit=self._max_frame_bytes,
            )

    def values(self) -> Generator[Any, None, None]:
        """Yield every complete frame's decoded value; keep any partial tail."""
        buf = self._buffer
        end_of_buf = len(buf)
        pos = 0
        unpack_from = HEADER.unpack_from
        max_container_len = self._max_container_len
        try:
            while end_of_buf - pos >= HEADER_SIZE:
                (length,) = unpack_from(buf, pos)
                self._check_length(length)
                end = pos + HEADER_SIZE + length
                if end > end_of_buf:
                    break
                start = pos + HEADER_SIZE
                pos = end
                if length < DECODE_IN_PLACE_FROM:
                    yield _unpack(bytes(buf[start:end]), max_container_len)
                    continue
                # A big frame (a log read or tail push of a megabyte) is decoded
                # where it lies instead of copied twice first (a slice, then
                # bytes). The views go before the value is handed on: the
                # buffer must be free to grow while the caller holds it.
                with memoryview(buf) as view, view[start:end] as body:
                    value = _unpack(body, max_container_len)
                yield value
        finally:
            if pos:
                del buf[:pos]


#: Frames at least this long are decoded from a view of the receive buffer.
DECODE_IN_PLACE_FROM: Final = 64 * 1024


def _unpack(body: bytes | memoryview, max_container_len: int | None) -> Any:
    if not body:
        raise ProtocolError("empty frame: a frame holds exactly one msgpack value")
    try:
        if max_container_len is None or len(body) <= max_container_len:
            # No container can hold more elements than its frame has bytes
            # (msgpack's own default bounds), so a frame this short needs no
            # check: the fast path for small frames stays as it was.
            return msgpack.unpackb(body, raw=False, strict_map_key=False)
        return msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=False,
            max_array_len=max_container_len,
            max_map_len=max_container_len,
        )
    except msgpack.ExtraData as exc:
        raise ProtocolError("frame holds more than one msgpack value") from exc
    except msgpack.StackError as exc:
        # msgpack's own message is empty: say what was wrong.
        raise ProtocolError("frame is not valid msgpack: arrays or maps nested too deep") from exc
    except msgpack.FormatError as exc:
        raise ProtocolError(
            "frame is not valid msgpack: a byte that begins no msgpack value (such as 0xc1)"
        ) from exc
    except ValueError as exc:
        if "exceeds max_" in str(exc):
            raise ProtocolError(
                f"frame holds an array or map of more than {max_container_len} elements"
            ) from None
        raise ProtocolError(f"frame is not valid msgpack: {exc}") from exc
    except (msgpack.UnpackException, RecursionError) as exc:
        raise ProtocolError(f"frame is not valid msgpack: {exc}") from exc
    except TypeError as exc:
        # A map whose key is an array or a map: valid msgpack, but unhashable
        # in Python, so it can never be a frame.
        raise ProtocolError(f"frame has a map key that is not a scalar: {exc}") from exc


class FrameDecoder:
    """Decodes client requests into their frames.

    ``frames()`` yields request frames, or ``InvalidFrame`` for maps that
    are not valid requests; it raises ``ProtocolError`` for a broken stream.
    ``decoders`` maps each op to its decoder: the compiled schema decoders by
    default, the server's op table (protocol/ops.py) in a session.
    """

    __slots__ = ("_decoders", "_raw")

    def __init__(
        self,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        *,
        max_container_len: int | None = None,
        decoders: Mapping[str, Decoder] = DECODERS,
    ) -> None:
        self._raw = RawFrameDecoder(max_frame_bytes, max_container_len=max_container_len)
        self._decoders = decoders

    @property
    def buffered_bytes(self) -> int:
        return self._raw.buffered_bytes

    @property
    def pending_frame_bytes(self) -> int:
        return self._raw.pending_frame_bytes

    def discard(self) -> None:
        self._raw.discard()

    @property
    def max_frame_bytes(self) -> int:
        return self._raw.max_frame_bytes

    @max_frame_bytes.setter
    def max_frame_bytes(self, value: int) -> None:
        # The session raises it from HELLO_MAX_FRAME_BYTES once hello succeeds.
        self._raw.max_frame_bytes = value

    def receive_data(self, data: bytes | bytearray) -> None:
        self._raw.receive_data(data)

    def values(self) -> Generator[Any, None, None]:
        """Yield each complete frame's msgpack value, not yet decoded into a request
        (the session decodes each with :func:`decode_request`, unless a fast path
        takes it first); stopping early (``close()``) keeps the rest buffered."""
        return self._raw.values()

    def frames(self) -> Generator[object, None, None]:
        """Yield each complete frame; a caller may stop early (``close()``) and the
        frames it did not take stay buffered for the next call."""
        values = self._raw.values()
        decoders = self._decoders
        try:
            for value in values:
                yield decode_request(value, decoders)
        finally:
            # Drop the consumed frames from the buffer now, not whenever the
            # inner generator happens to be collected.
            values.close()


def decode_request(value: object, decoders: Mapping[str, Decoder] = DECODERS) -> object:
    """Map one decoded msgpack value to a request frame or an InvalidFrame."""
    if type(value) is not dict:
        raise ProtocolError("a frame must be a msgpack map with an 'op' key")
    raw_id = value.get("id")
    request_id = raw_id if type(raw_id) is int and raw_id >= 0 else None
    op = value.get("op")
    if type(op) is not str:
        return InvalidFrame(request_id, BadRequest("frame has no string 'op' field"))
    if op not in REQUESTS:
        return InvalidFrame(request_id, UnknownOp(f"unknown op {op!r}"))
    decoder = decoders[op]
    if request_id is None:
        return InvalidFrame(None, BadRequest("request has no unsigned integer 'id' field"))
    try:
        return decoder(value, "")
    except BrokerError as exc:
        # Without its traceback: its frames lead back (f_back) to the caller's,
        # which holds this InvalidFrame, a cycle that would keep the refused
        # value (up to a frame of junk) until a full garbage collection.
        return InvalidFrame(request_id, exc.with_traceback(None))


class SharedPacker:
    """One msgpack ``Packer`` reused for every value, replaced after a big one.

    Reusing a Packer is what makes packing small frames cheap (building one
    costs more than packing a small reply). But a Packer keeps its buffer at
    the largest size it ever packed, doubled: one 16 MiB answer would hold
    up to 32 MiB for the life of the process, long after the queue or log it
    came from is gone. So a value bigger than a fresh Packer's buffer gets
    its bytes from this Packer, which is then dropped for a fresh one.
    """

    #: A fresh Packer's buffer (msgpack 1.x); values up to this size keep it.
    KEEP_BYTES: Final = 256 * 1024

    __slots__ = ("_packer",)

    def __init__(self) -> None:
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)

    def pack(self, value: Any) -> bytes:
        body: bytes = self._packer.pack(value)
        if len(body) > self.KEEP_BYTES:
            self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)
        return body


_pack = SharedPacker().pack


def pack_frame(value: Mapping[str, Any]) -> bytes:
    """Length-prefix one msgpack value: the bytes of one complete frame."""
    body = _pack(value)
    return HEADER.pack(len(body)) + body


def check_frame_size(frame: bytes, max_frame_bytes: int) -> None:
    """Raise TooLarge if an outgoing frame would break the peer's limit."""
    if len(frame) - HEADER_SIZE > max_frame_bytes:
        raise TooLarge(
            f"frame of {len(frame) - HEADER_SIZE} bytes exceeds the limit of "
            f"{max_frame_bytes} bytes",
            limit=max_frame_bytes,
        )


# ------------------------------------------------ frames the server sends
#
# Every frame the server sends is built below, from its frame class; the
# module docstring says how (generic ``encode``, fast paths, error bounds).

#: Longest UTF-8 text of any string in an error frame (messages, echoed names).
MAX_ERROR_TEXT_BYTES: Final = 400


def encode(frame: Frame) -> bytes:
    """Any frame, the generic way: ``op`` first, nil optional fields left out."""
    wire = to_wire(frame)
    assert isinstance(wire, dict)
    return pack_frame({"op": frame.op, **wire})  # type: ignore[attr-defined]


# ------------------------------------------------------------- per request


def ok(frame: frames.Ok) -> bytes:
    """The ``ok`` answer; ``result`` is always there (nil when nothing)."""
    return pack_frame({"op": "ok", "id": frame.id, "result": frame.result})


def ok_of(request_id: int, result: object) -> bytes:
    """``ok(frames.Ok(request_id, result))`` without building the frame: the
    answer to every request, a request/reply call's reply among them."""
    return pack_frame({"op": "ok", "id": request_id, "result": result})


def error_frame(request_id: int | None, error: BrokerError, max_frame_bytes: int) -> bytes:
    """The ``error`` frame for ``error``, at most ``max_frame_bytes`` long (prefix excluded)."""
    message = shorten(error.message)
    if error.details:
        data = encode(frames.Error(error.code, message, request_id, _bounded(error.details)))
        if len(data) - HEADER_SIZE <= max_frame_bytes:
            return data
    return encode(frames.Error(error.code, message, request_id))


def end_frame(sub_id: int, error: BrokerError) -> bytes:
    """The ``end`` push that closes subscription ``sub_id`` because of ``error``."""
    return encode(frames.End(sub_id, error.code, shorten(error.message)))


def bye_frame(error: BrokerError) -> bytes:
    """The last frame on a connection the server closes because of ``error``."""
    return encode(frames.Bye(error.code, shorten(error.message)))


def shorten(text: str, max_bytes: int = MAX_ERROR_TEXT_BYTES) -> str:
    """``text`` if its UTF-8 form fits ``max_bytes``, else its start and a note of the cut."""
    # A character takes 1 to 4 bytes: only a text in between needs measuring.
    if len(text) <= max_bytes // 4:
        return text
    if len(text) <= max_bytes and len(text.encode("utf-8", "surrogatepass")) <= max_bytes:
        return text
    note = f"... ({len(text)} characters, cut)"
    kept = text[: max_bytes - len(note)]
    # Cut further while multi-byte characters make the start too long.
    while len(kept.encode("utf-8", "surrogatepass")) > max_bytes - len(note):
        kept = kept[: len(kept) * 3 // 4]
    return kept + note


def _bounded(value: object) -> object:
    """``details`` with every string in them shortened (one level of containers deep)."""
    if isinstance(value, str):
        return shorten(value)
    if isinstance(value, dict):
        return {k: _bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded(v) for v in value]
    return value


# ------------------------------------------------------------------ pushes


def notice(frame: frames.Notice) -> bytes:
    """A subscription lost messages to its overflow policy."""
    return encode(frame)


def records(frame: frames.Records) -> bytes:
    """A log tail's next chunk of stored records.

    The same bytes as ``pack_frame`` of the map ``{"op", "sub", "data",
    "count", "next_offset"}`` (a test checks it), put together around the
    chunk so that its megabyte is copied once, by one join: packing the map
    copied it into the packer's growing buffer, out of it, and again behind
    the length prefix.
    """
    data = frame.data
    head = _RECORDS_HEAD + _pack(frame.sub) + _DATA_KEY + bin_header(len(data))
    tail = b"".join((_COUNT_KEY, _pack(frame.count), _NEXT_OFFSET_KEY, _pack(frame.next_offset)))
    size = len(head) + len(data) + len(tail)
    return b"".join((HEADER.pack(size), head, data, tail))


#: ``records`` push pieces: a map of five, its keys, the op.
_RECORDS_HEAD: Final = b"".join((b"\x85", *map(msgpack.packb, ("op", "records", "sub"))))
_DATA_KEY: Final = msgpack.packb("data")
_COUNT_KEY: Final = msgpack.packb("count")
_NEXT_OFFSET_KEY: Final = msgpack.packb("next_offset")
_BIN8: Final = struct.Struct(">BB")
_BIN16: Final = struct.Struct(">BH")
_BIN32: Final = struct.Struct(">BI")


def bin_header(length: int) -> bytes:
    """The msgpack header of a ``bin`` of ``length`` bytes (bin 8, 16 or 32)."""
    if length < 0x100:
        return _BIN8.pack(0xC4, length)
    if length < 0x10000:
        return _BIN16.pack(0xC5, length)
    return _BIN32.pack(0xC6, length)


def req(frame: frames.Req) -> bytes:
    """Requests for a responder: one map per request, ``headers`` only when there are some."""
    requests: list[dict[str, object]] = []
    add = requests.append
    for r in frame.requests:
        if r.headers is None:
            add({"rid": r.rid, "subject": r.subject, "body": r.body, "timeout": r.timeout})
        else:
            add(
                {
                    "rid": r.rid,
                    "subject": r.subject,
                    "body": r.body,
                    "headers": r.headers,
                    "timeout": r.timeout,
                }
            )
    return pack_frame({"op": "req", "sub": frame.sub, "requests": requests})


def req_rows(sub: int, rows: list[tuple[int, str, bytes, dict[str, str] | None, float]]) -> bytes:
    """The ``req`` push of ``rows`` ``(rid, subject, body, headers, timeout)``, as
    :func:`req` builds it from ``Req(sub, [RequestOut(rid, subject, body,
    headers or None, timeout), ...])``, without building those objects: the
    frame a responder gets once per request (or per batch of requests)."""
    requests: list[dict[str, object]] = []
    add = requests.append
    for rid, subject, body, headers, timeout in rows:
        if headers:
            add(
                {
                    "rid": rid,
                    "subject": subject,
                    "body": body,
                    "headers": headers,
                    "timeout": timeout,
                }
            )
        else:
            add({"rid": rid, "subject": subject, "body": body, "timeout": timeout})
    return pack_frame({"op": "req", "sub": sub, "requests": requests})


# Fixed msgpack pieces: fixmap headers and fixstr keys (0xa0 | length).
_MESSAGE_2: Final = b"\x82\xa5topic"  # {"topic": ..., "body": ...}
_MESSAGE_3: Final = b"\x83\xa5topic"  # {"topic": ..., "body": ..., "headers": ...}
_BODY_KEY: Final = b"\xa4body"
_HEADERS_KEY: Final = b"\xa7headers"
_MSG_FRAME_START: Final = b"\x83\xa2op\xa3msg\xa3sub"  # {"op": "msg", "sub": ...
_COMPACT_MSG_FRAME_START: Final = b"\x84\xa2op\xa3msg\xa3sub"  # ... and "topic" at the end
_MESSAGES_KEY: Final = b"\xa8messages"
_TOPIC_KEY: Final = b"\xa5topic"

#: The msgpack ``bin`` of one body: a message of a compact ``msg`` frame
#: published to the frame's topic without headers (what :func:`compact_msg` joins).
bare_message = _pack


def topic_message(message: frames.TopicMessage) -> bytes:
    """The msgpack map of one message of a ``msg`` frame (what :func:`msg` joins)."""
    if message.headers is None:
        return _MESSAGE_2 + _pack(message.topic) + _BODY_KEY + _pack(message.body)
    return b"".join(
        (
            _MESSAGE_3,
            _pack(message.topic),
            _BODY_KEY,
            _pack(message.body),
            _HEADERS_KEY,
            _pack(message.headers),
        )
    )


def msg(sub_id: int, packed: list[bytes], size: int) -> bytes:
    """The ``msg`` frame of subscription ``sub_id`` holding the messages ``packed``.

    ``packed`` are :func:`topic_message` bytes, ``size`` their total length:
    the frame ``encode(frames.Msg(sub_id, messages))`` would build, without
    packing any message again.
    """
    head = _MSG_FRAME_START + _pack(sub_id) + _MESSAGES_KEY + _array_header(len(packed))
    return b"".join((HEADER.pack(len(head) + size), head, *packed))


def compact_msg(sub_id: int, topic: str, packed: list[bytes], size: int) -> bytes:
    """The ``msg`` frame of a compact subscription: ``packed`` (``size`` bytes)
    holds :func:`bare_message` bodies of messages on ``topic`` and
    :func:`topic_message` maps of any others, in order; the frame
    ``encode(frames.Msg(sub_id, messages, topic))`` would build.
    """
    head = _COMPACT_MSG_FRAME_START + _pack(sub_id) + _MESSAGES_KEY + _array_header(len(packed))
    tail = _TOPIC_KEY + _pack(topic)
    return b"".join((HEADER.pack(len(head) + size + len(tail)), head, *packed, tail))


def _array_header(length: int) -> bytes:
    if length < 16:
        return bytes((0x90 | length,))
    if length < 0x10000:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")
