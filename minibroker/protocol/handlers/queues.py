"""Queue requests: declare, delete, purge, list, stats, inspect, put, fetch (and
fetch.cancel), ack, nack.

Each handler maps one request frame to one call on the namespace's
:class:`~minibroker.core.queues.Queues` and turns the answer into the
response's plain ``result`` value. The shapes are documented in
docs/queues.md ("On the wire"); in short:

=================  ====================================================
op                 result
=================  ====================================================
``queue.declare``  ``{"queue": name, "created": bool}``
``queue.delete``   ``{"messages": n}`` (messages that were in it)
``queue.purge``    ``{"purged": n}``
``queue.list``     ``[{"queue", "ready", "in_flight", "consumers", "durable"}, ...]``
``queue.stats``    every QueueStatistics field, plus ``"options"``
``queue.inspect``  ``{"ready": [...], "in_flight": [...], "delayed": [...]}``
``put``            ``{"count": n}``
``fetch``          ``[delivery, ...]``, possibly empty
``fetch.cancel``   ``{"cancelled": bool}`` (the parked fetch answers ``[]``)
``ack`` / ``nack`` ``{"count": n}``
=================  ====================================================

A delivery is ``{"delivery_id", "body", "delivery_count", "published_at"}``
plus ``"headers"`` when the message has any. A ``fetch`` returns at most
``max_messages`` deliveries and at most what fits one frame of the
connection (``Session.frame_budget``); the rest stays ready.

The W1 hot path (a producer's ``put`` batches, a consumer's ``fetch``
batches) builds no object per message here: :func:`decode_put` keeps a
batch of bare bodies as the list msgpack decoded, and a ``compact`` fetch
is answered by :func:`encode_compact`, one map of columns whose lists are
gathered in C, instead of a map per delivery (docs/protocol.md, ``fetch``).
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any

from minibroker.core.durations import check_seconds
from minibroker.core.queue_message import FirstDeliveries, Message
from minibroker.core.queue_options import MAX_VISIBILITY_TIMEOUT, QueueOptions, QueueStatistics
from minibroker.protocol import frames
from minibroker.protocol.frames import DECODERS
from minibroker.protocol.handlers.messages import fast_messages
from minibroker.protocol.handlers.parked import PARKED
from minibroker.value_class import asdict

if TYPE_CHECKING:
    from minibroker.protocol.session import Session


def encode_deliveries(messages: list[Message]) -> list[dict[str, Any]]:
    """Deliveries as the wire carries them (the fetch hot path: one dict per message)."""
    out: list[dict[str, Any]] = []
    add = out.append
    for m in messages:
        if m.headers:
            add(
                {
                    "delivery_id": m.delivery_id,
                    "body": m.body,
                    "delivery_count": m.delivery_count,
                    "published_at": m.published_at,
                    "headers": m.headers,
                }
            )
        else:
            add(
                {
                    "delivery_id": m.delivery_id,
                    "body": m.body,
                    "delivery_count": m.delivery_count,
                    "published_at": m.published_at,
                }
            )
    return out


_bodies_of = attrgetter("body")
_counts_of = attrgetter("delivery_count")
_published_of = attrgetter("published_at")
_headers_of = attrgetter("headers")


def encode_compact(
    messages: list[Message] | FirstDeliveries,
) -> dict[str, Any] | list[dict[str, Any]]:
    """Deliveries as one compact map of columns (a ``fetch`` with ``compact``).

    ``{"first_id", "bodies", "delivery_count", "published_at", "headers"?}``:
    the deliveries' ids are ``first_id``, ``first_id + 1``, ... (one fetch
    hands out a contiguous range, see ``Queue._deliver``); ``delivery_count``
    and ``published_at`` are one integer when every delivery has that value
    (the common case: a batch put at once, delivered for the first time),
    else an array; ``headers`` is there only when some delivery has headers
    (an array, nil for the others). An empty answer is ``{"bodies": []}``.
    The columns are gathered with ``map`` over ``attrgetter``, in C; a
    ``FirstDeliveries`` (first deliveries of bare bodies, core/queue_message.py)
    already is columns.
    """
    if type(messages) is FirstDeliveries:
        published_at = messages.published_at
        first_published = published_at[0]
        return {
            "first_id": messages.first_id,
            "bodies": messages.bodies,
            "delivery_count": 1,
            "published_at": (
                first_published
                if published_at.count(first_published) == len(published_at)
                else published_at
            ),
        }
    assert type(messages) is list
    if not messages:
        return {"bodies": []}
    first_id = messages[0].delivery_id
    if messages[-1].delivery_id != first_id + len(messages) - 1:
        return encode_deliveries(messages)  # not a range: the map form, as a client reads too
    counts = list(map(_counts_of, messages))
    published = list(map(_published_of, messages))
    out: dict[str, Any] = {
        "first_id": first_id,
        "bodies": list(map(_bodies_of, messages)),
        "delivery_count": counts[0] if len(set(counts)) == 1 else counts,
        "published_at": published[0] if len(set(published)) == 1 else published,
    }
    headers = list(map(_headers_of, messages))
    if headers.count(None) != len(headers):
        out["headers"] = [h or None for h in headers]
    return out


def _encode_parked(result: object) -> object:
    assert isinstance(result, list)
    return encode_deliveries(result)


def _encode_parked_compact(result: object) -> object:
    assert isinstance(result, (list, FirstDeliveries))
    return encode_compact(result)


_generic_put_decoder: Any = None


def decode_put(raw: dict[Any, Any], path: str = "") -> frames.Put:
    """Decode a ``put`` map: the common shape fast, anything else the generic way.

    The result is the same ``frames.Put`` the generic decoder builds (a
    property test checks it, errors included); a batch of bare bodies stays
    the list msgpack decoded (protocol/handlers/messages.py).
    """
    global _generic_put_decoder
    queue = raw.get("queue")
    request_id = raw.get("id")
    if type(queue) is str and type(request_id) is int:
        decoded = fast_messages(raw.get("messages"))
        if decoded is not None:
            return frames.Put(request_id, queue, decoded)
    if _generic_put_decoder is None:  # compiled on first use, as the op table does
        _generic_put_decoder = DECODERS[frames.Put.op]
    generic: frames.Put = _generic_put_decoder(raw, path)
    return generic


def _message_view(m: Message) -> dict[str, Any]:
    view: dict[str, Any] = {
        "body": m.body,
        "delivery_count": m.delivery_count,
        "published_at": m.published_at,
    }
    if m.headers:
        view["headers"] = m.headers
    return view


def _stats(stats: QueueStatistics) -> dict[str, Any]:
    out = asdict(stats)
    out["queue"] = out.pop("name")
    return out


def declare(session: Session, frame: frames.QueueDeclare, now: float) -> dict[str, Any]:
    options = QueueOptions(
        max_length=frame.max_length,
        max_length_bytes=frame.max_length_bytes,
        overflow=frame.overflow,
        message_ttl=frame.message_ttl,
        visibility_timeout=frame.visibility_timeout,
        max_deliveries=frame.max_deliveries,
        dead_letter_queue=frame.dead_letter_queue,
        durable=frame.durable,
    )
    created = session.ns.queues.declare(frame.queue, options, now)
    return {"queue": frame.queue, "created": created}


def delete(session: Session, frame: frames.QueueDelete, now: float) -> dict[str, Any]:
    return {"messages": session.ns.queues.delete(frame.queue, now)}


def purge(session: Session, frame: frames.QueuePurge, now: float) -> dict[str, Any]:
    return {"purged": session.ns.queues.get(frame.queue).purge(now)}


def list_queues(session: Session, frame: frames.QueueList, now: float) -> list[dict[str, Any]]:
    return [
        {
            "queue": s.name,
            "ready": s.ready,
            "in_flight": s.in_flight,
            "consumers": s.consumers,
            "durable": s.durable,
        }
        for s in session.ns.queues.list()
    ]


def stats(session: Session, frame: frames.QueueStats, now: float) -> dict[str, Any]:
    queue = session.ns.queues.get(frame.queue)
    out = _stats(queue.statistics())
    out["options"] = queue.options.to_dict()
    return out


def inspect(session: Session, frame: frames.QueueInspect, now: float) -> dict[str, Any]:
    contents = session.ns.queues.get(frame.queue).inspect(frame.limit)
    in_flight = []
    for held in contents.in_flight:
        view = _message_view(held.message)
        view["delivery_id"] = held.delivery_id
        view["connection"] = held.conn_id
        view["visible_in"] = max(0.0, held.deadline - now)
        in_flight.append(view)
    delayed = []
    for parked in contents.delayed:
        view = _message_view(parked.message)
        view["ready_in"] = max(0.0, parked.until - now)
        delayed.append(view)
    return {
        "ready": [_message_view(m) for m in contents.ready],
        "in_flight": in_flight,
        "delayed": delayed,
    }


def put(session: Session, frame: frames.Put, now: float) -> dict[str, int]:
    count = session.ns.queues.get(frame.queue).put(frame.messages, now)
    return {"count": count}


def fetch(session: Session, frame: frames.Fetch, now: float) -> Any:
    queue = session.ns.queues.get(frame.queue)
    max_wait = session.broker.config.limits.max_wait_seconds
    check_seconds("wait", frame.wait, max_wait, allow_zero=True)
    if frame.visibility_timeout is not None:
        # Checked here, not only in the core: the core takes ``math.inf``
        # (``UNTIL_SETTLED``, AMQP's hold-until-settled) from its own front
        # ends, and a client must not reach it.
        check_seconds("visibility_timeout", frame.visibility_timeout, MAX_VISIBILITY_TIMEOUT)
    # A fetch's deliveries must fit one frame of this connection: what does
    # not fit stays ready for the next fetch (see Queue.fetch).
    budget = session.frame_budget
    if frame.compact:
        messages = queue.fetch_compact(
            session, frame.max_messages, now, frame.visibility_timeout, budget
        )
        if messages or frame.wait <= 0:
            return encode_compact(messages)
    else:
        listed = queue.fetch(session, frame.max_messages, now, frame.visibility_timeout, budget)
        if listed or frame.wait <= 0:
            return encode_deliveries(listed)
    token = session.park(frame.id, _encode_parked_compact if frame.compact else _encode_parked)
    try:
        queue.wait(
            session,
            token,
            frame.max_messages,
            now,
            frame.wait,
            frame.visibility_timeout,
            budget,
            frame.compact,
        )
    except BaseException:
        session.unpark(token)
        raise
    return PARKED


def fetch_cancel(session: Session, frame: frames.FetchCancel, now: float) -> dict[str, bool]:
    """Withdraw a parked fetch of this connection (a consumer leaving).

    The fetch is answered with an empty list before this request's own
    answer. ``cancelled`` is False, not an error, when the id names no
    fetch parked on this queue by this connection: it was answered already
    (its deliveries are the client's to give back) or never existed.
    """
    queue = session.ns.queues.get(frame.queue)
    token = session.parked_token(frame.fetch)
    cancelled = token is not None and queue.cancel_wait(session, token, now)
    return {"cancelled": cancelled}


def ack(session: Session, frame: frames.Ack, now: float) -> dict[str, int]:
    count = session.ns.queues.get(frame.queue).ack(session, frame.deliveries, now)
    return {"count": count}


def nack(session: Session, frame: frames.Nack, now: float) -> dict[str, int]:
    count = session.ns.queues.get(frame.queue).nack(
        session, frame.deliveries, now, requeue=frame.requeue, delay=frame.delay
    )
    return {"count": count}
