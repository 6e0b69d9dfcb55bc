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

Encoding is the fan-out hot path: each message is packed once
(:func:`minibroker.protocol.codec.topic_message`), the first time any
subscription sends it, and the bytes are cached on the shared
:class:`~minibroker.core.topics.TopicMessage`; every subscription then
builds its frame from those cached bytes (:func:`~minibroker.protocol.codec.msg`).
For one publisher and four subscribers that is one pack per message instead
of four, and the per-subscriber cost per message is a list append.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from minibroker.core.topics import TopicMessage, TopicSubscription
from minibroker.protocol import codec, frames

if TYPE_CHECKING:
    from minibroker.protocol.session import Session

def publish(session: Session, frame: frames.Publish, now: float) -> dict[str, int]:
    result = session.ns.topics.publish(frame.topic, frame.messages, now)
    return {"subscriptions": result.subscriptions, "queues": result.queues}


def subscribe(session: Session, frame: frames.Subscribe, now: float) -> dict[str, int]:
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


def bind(session: Session, frame: frames.Bind, now: float) -> dict[str, bool]:
    return {"created": session.ns.topics.bind(frame.queue, frame.pattern)}


def unbind(session: Session, frame: frames.Unbind, now: float) -> dict[str, bool]:
    return {"removed": session.ns.topics.unbind(frame.queue, frame.pattern)}


def pack_message(message: TopicMessage) -> bytes:
    """The msgpack map of one message in a ``msg`` frame, cached on the message."""
    out = frames.TopicMessage(message.topic, message.body, message.headers or None)
    wire = message.wire = codec.topic_message(out)
    return wire


def encode_messages(source: TopicSubscription, budget: int) -> tuple[bytes, bool]:
    """Drain a subscription's buffer into one ``msg`` frame of at most ``budget`` message bytes.

    Always takes at least one message (the session calls only with budget
    left), so a message bigger than the budget still goes out, alone; every
    further message is taken only if it still fits, because the budget is
    also what keeps the frame within the connection's frame limit. A
    ``notice`` frame goes first if messages were dropped since the last call.
    """
    items = source.items
    parts: list[bytes] = []
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
    notice = b""
    if source.pending_dropped:
        notice = codec.notice(frames.Notice(source.sub_id, source.take_dropped()))
    if not parts:
        return notice, False
    source.stats.delivered += len(parts)
    return notice + codec.msg(source.sub_id, parts, size), bool(items)
