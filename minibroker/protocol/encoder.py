"""Every frame the server sends, built here from its frame class (frames.py).

``encode(frame)`` is the generic path: the frame's fields in declaration
order behind ``op``, optional fields left out when nil (docs/protocol.md,
"nil"). The other functions are the same frames on a shorter path, for the
frames sent per request or per message; each gives the bytes ``encode``
gives for the same frame, which tests/protocol/test_encoder.py checks on
arbitrary frames:

* :func:`ok`: the answer to every request;
* :func:`records` and :func:`req`: the log tail and responder pushes;
* :func:`topic_message` and :func:`msg`: the fan-out path. A topic message
  is packed once, whatever the number of subscriptions it goes to, and each
  subscription's ``msg`` frame joins those bytes behind a hand-written
  msgpack header (map of 3, ``op``, ``sub``, ``messages``, array length).

Error, ``end`` and ``bye`` frames always fit the frame limit. An error
message often echoes what the client sent: an unknown op name, a name that
breaks the rules, a value out of range. Echoed whole, a request of 16 MiB
whose ``op`` is 16 MiB of text got an answer *larger* than the 16 MiB the
server promises never to send (issue 14 item 8), and the client's decoder
dropped the connection over it. So every string in an error is cut here to
:data:`MAX_ERROR_TEXT_BYTES` of UTF-8 (at a character boundary, with a mark
saying how much went), and ``details`` are left out altogether if the frame
would still not fit: the code and the message are the error, the details
only extras. The smallest frame limit the server accepts (1024 bytes) leaves
room for a message of that size plus the envelope.
"""

from __future__ import annotations

from typing import Final

from minibroker.errors import BrokerError
from minibroker.protocol import frames
from minibroker.protocol.codec import HEADER, HEADER_SIZE, SharedPacker, pack_frame
from minibroker.protocol.frame_class import Frame
from minibroker.protocol.schema import to_wire

#: Longest UTF-8 text of any string in an error frame (messages, echoed names).
MAX_ERROR_TEXT_BYTES: Final = 400

_pack = SharedPacker().pack


def encode(frame: Frame) -> bytes:
    """Any frame, the generic way: ``op`` first, nil optional fields left out."""
    wire = to_wire(frame)
    assert isinstance(wire, dict)
    return pack_frame({"op": frame.op, **wire})  # type: ignore[attr-defined]


# ------------------------------------------------------------- per request


def ok(frame: frames.Ok) -> bytes:
    """The ``ok`` answer; ``result`` is always there (nil when nothing)."""
    return pack_frame({"op": "ok", "id": frame.id, "result": frame.result})


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
    """A log tail's next chunk of stored records."""
    return pack_frame(
        {
            "op": "records",
            "sub": frame.sub,
            "data": frame.data,
            "count": frame.count,
            "next_offset": frame.next_offset,
        }
    )


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


# Fixed msgpack pieces: fixmap headers and fixstr keys (0xa0 | length).
_MESSAGE_2: Final = b"\x82\xa5topic"  # {"topic": ..., "body": ...}
_MESSAGE_3: Final = b"\x83\xa5topic"  # {"topic": ..., "body": ..., "headers": ...}
_BODY_KEY: Final = b"\xa4body"
_HEADERS_KEY: Final = b"\xa7headers"
_MSG_FRAME_START: Final = b"\x83\xa2op\xa3msg\xa3sub"  # {"op": "msg", "sub": ...
_MESSAGES_KEY: Final = b"\xa8messages"


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


def _array_header(length: int) -> bytes:
    if length < 16:
        return bytes((0x90 | length,))
    if length < 0x10000:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")
