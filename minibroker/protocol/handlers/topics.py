"""Topic requests (publish, subscribe, bind, unbind) and the ``msg`` push encoder.

=============  ==========================================  ==================================
op             fields                                      result
=============  ==========================================  ==================================
``publish``    ``topic``, ``messages: [{body, headers?}]``  ``{"subscriptions": n, "queues": m}``
``subscribe``  ``pattern``, ``group?``, ``buffer?``,        ``{"sub": id}``
               ``buffer_bytes?``, ``on_overflow?``
``bind``       ``queue``, ``pattern``                      ``{"created": bool}``
``unbind``     ``queue``, ``pattern``                      ``{"removed": bool}``
=============  ==========================================  ==================================

``unsubscribe`` is generic (handlers/base.py). A subscription's messages
arrive as pushes::

    {"op": "msg", "sub": id, "messages": [{"topic", "body", "headers"?}, ...]}
    {"op": "notice", "sub": id, "dropped": n}   # before the next msg, after drops

Encoding is the fan-out hot path, so it is done by hand rather than by
packing one dict per message and subscriber: each message is packed once,
the first time any subscription sends it, and the bytes are cached on the
shared :class:`~minibroker.core.topics.TopicMessage`; every subscription
then builds its frame by joining those cached bytes behind a hand-written
msgpack header (map of 3, ``op``, ``sub``, ``messages``, array length).
For one publisher and four subscribers that is one pack per message instead
of four, and the per-subscriber cost per message is a list append.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from minibroker.core.topics import TopicMessage, TopicSubscription
from minibroker.protocol import frames
from minibroker.protocol.codec import HEADER, SharedPacker, pack_frame
from minibroker.protocol.handlers.registry import encodes_pushes, handles

if TYPE_CHECKING:
    from minibroker.protocol.session import Session

_pack = SharedPacker().pack

# Fixed msgpack pieces: fixmap headers and fixstr keys (0xa0 | length).
_MESSAGE_2: Final = b"\x82\xa5topic"  # {"topic": ..., "body": ...}
_MESSAGE_3: Final = b"\x83\xa5topic"  # {"topic": ..., "body": ..., "headers": ...}
_BODY_KEY: Final = b"\xa4body"
_HEADERS_KEY: Final = b"\xa7headers"
_MSG_FRAME_START: Final = b"\x83\xa2op\xa3msg\xa3sub"  # {"op": "msg", "sub": ...
_MESSAGES_KEY: Final = b"\xa8messages"


@handles(frames.Publish)
def publish(session: Session, frame: frames.Publish) -> dict[str, int]:
    result = session.ns.topics.publish(frame.topic, frame.messages, session.now)
    return {"subscriptions": result.subscriptions, "queues": result.queues}


@handles(frames.Subscribe)
def subscribe(session: Session, frame: frames.Subscribe) -> dict[str, int]:
    topics = session.ns.topics
    sub_id = session.add_subscription(
        lambda sub_id: topics.subscribe(
            session,
            sub_id,
            frame.pattern,
            group=frame.group,
            buffer=frame.buffer,
            on_overflow=frame.on_overflow,
            buffer_bytes=frame.buffer_bytes,
        )
    )
    return {"sub": sub_id}


@handles(frames.Bind)
def bind(session: Session, frame: frames.Bind) -> dict[str, bool]:
    return {"created": session.ns.topics.bind(frame.queue, frame.pattern)}


@handles(frames.Unbind)
def unbind(session: Session, frame: frames.Unbind) -> dict[str, bool]:
    return {"removed": session.ns.topics.unbind(frame.queue, frame.pattern)}


def pack_message(message: TopicMessage) -> bytes:
    """The msgpack map of one message in a ``msg`` frame, cached on the message."""
    if message.headers:
        wire = b"".join(
            (
                _MESSAGE_3,
                _pack(message.topic),
                _BODY_KEY,
                _pack(message.body),
                _HEADERS_KEY,
                _pack(message.headers),
            )
        )
    else:
        wire = _MESSAGE_2 + _pack(message.topic) + _BODY_KEY + _pack(message.body)
    message.wire = wire
    return wire


def _array_header(length: int) -> bytes:
    if length < 16:
        return bytes((0x90 | length,))
    if length < 0x10000:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


@encodes_pushes(TopicSubscription)
def encode_messages(source: TopicSubscription, budget: int) -> tuple[bytes, bool]:
    """Drain a subscription's buffer into one ``msg`` frame of at most ``budget`` message bytes.

    Always takes at least one message (the session calls only with budget
    left), so a message bigger than the budget still goes out, alone; every
    further message is taken only if it still fits, because the budget is
    also what keeps the frame within the connection's frame limit. A
    ``notice`` frame goes first if messages were dropped since the last call.
    """
    items = source.items
    # parts[0] and parts[1] are filled in below: length prefix and frame head.
    parts: list[bytes] = [b"", b""]
    add = parts.append
    size = 0
    held = 0
    popleft = items.popleft
    while items:
        message = items[0]
        wire = message.wire or pack_message(message)
        if size + len(wire) > budget and size:
            break
        popleft()
        add(wire)
        size += len(wire)
        held += message.size
    source.taken(held)
    count = len(parts) - 2
    notice = b""
    if source.pending_dropped:
        notice = pack_frame(
            {"op": "notice", "sub": source.sub_id, "dropped": source.take_dropped()}
        )
    if not count:
        return notice, False
    source.stats.delivered += count
    head = _MSG_FRAME_START + _pack(source.sub_id) + _MESSAGES_KEY + _array_header(count)
    parts[0] = HEADER.pack(len(head) + size)
    parts[1] = head
    return notice + b"".join(parts), bool(items)
