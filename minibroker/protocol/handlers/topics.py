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

Compact subscriptions (``subscribe`` with ``compact: true``, what the Python
clients ask for) get each message published to the frame's ``topic``
without headers as its bare body, packed once too
(:func:`minibroker.protocol.codec.bare_message`, cached in the message's
``bare`` slot), and the frame names the topic once
(:func:`~minibroker.protocol.codec.compact_msg`): a subscriber then decodes
no map per message. A ``publish`` may likewise carry bare bodies
(:func:`decode_publish`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from minibroker.core.topics import TopicMessage, TopicSubscription
from minibroker.protocol import codec, frames
from minibroker.protocol.frames import DECODERS
from minibroker.protocol.handlers.messages import fast_messages

if TYPE_CHECKING:
    from minibroker.protocol.session import Session

def publish(session: Session, frame: frames.Publish, now: float) -> dict[str, int]:
    result = session.ns.topics.publish(frame.topic, frame.messages, now)
    return {"subscriptions": result.subscriptions, "queues": result.queues}


def subscribe(session: Session, frame: frames.Subscribe, now: float) -> dict[str, int]:
    topics = session.ns.topics

    def make(sub_id: int) -> TopicSubscription:
        subscription = topics.subscribe(
            session,
            sub_id,
            frame.pattern,
            group=frame.group,
            buffer=frame.buffer,
            on_overflow=frame.on_overflow,
            buffer_bytes=frame.buffer_bytes,
        )
        subscription.bare_bodies = frame.compact
        return subscription

    return {"sub": session.add_subscription(make)}


def bind(session: Session, frame: frames.Bind, now: float) -> dict[str, bool]:
    return {"created": session.ns.topics.bind(frame.queue, frame.pattern)}


def unbind(session: Session, frame: frames.Unbind, now: float) -> dict[str, bool]:
    return {"removed": session.ns.topics.unbind(frame.queue, frame.pattern)}


_generic_publish_decoder: Any = None


def decode_publish(raw: dict[Any, Any], path: str = "") -> frames.Publish:
    """Decode a ``publish`` map: the common shape fast, anything else the generic way.

    The result is the same ``frames.Publish`` the generic decoder builds (a
    property test checks it); bare bodies stay bytes, so the common batch
    builds no object per message here (protocol/handlers/messages.py).
    """
    topic = raw.get("topic")
    request_id = raw.get("id")
    if type(topic) is not str or type(request_id) is not int:
        return _generic_publish(raw, path)
    decoded = fast_messages(raw.get("messages"))
    if decoded is None:
        return _generic_publish(raw, path)
    return frames.Publish(request_id, topic, decoded)


def _generic_publish(raw: dict[Any, Any], path: str) -> frames.Publish:
    global _generic_publish_decoder
    if _generic_publish_decoder is None:  # compiled on first use, as the op table does
        _generic_publish_decoder = DECODERS[frames.Publish.op]
    decoded: frames.Publish = _generic_publish_decoder(raw, path)
    return decoded


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
    if source.bare_bodies:
        return _encode_compact(source, budget)
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


def _encode_compact(source: TopicSubscription, budget: int) -> tuple[bytes, bool]:
    """:func:`encode_messages` for a compact subscription: the frame's topic is
    its first message's, and every message on that topic without headers goes
    as its bare body.

    The loop is the broker's per-message, per-subscriber work in fan-out, so
    it pops first and puts back the one message that does not fit, instead
    of peeking at every message.
    """
    items = source.items
    if not items:
        return _notice(source), False
    parts: list[bytes] = []
    add = parts.append
    left = budget
    held = 0
    popleft = items.popleft
    topic = items[0].topic
    while items:
        message = popleft()
        if message.headers or message.topic != topic:
            wire = message.wire or pack_message(message)
        else:
            wire = message.bare or _pack_bare(message)
        length = len(wire)
        if length > left and parts:
            items.appendleft(message)
            break
        add(wire)
        left -= length
        held += message.size
    source.taken(held)
    source.stats.delivered += len(parts)
    frame = codec.compact_msg(source.sub_id, topic, parts, budget - left)
    return _notice(source) + frame, bool(items)


def _notice(source: TopicSubscription) -> bytes:
    """A ``notice`` frame if messages were dropped since the last push, else nothing."""
    if source.pending_dropped:
        return codec.notice(frames.Notice(source.sub_id, source.take_dropped()))
    return b""


def _pack_bare(message: TopicMessage) -> bytes:
    """The msgpack ``bin`` of the message's body, cached on the message."""
    bare = message.bare = codec.bare_message(message.body)
    return bare
