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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from minibroker.core.durations import check_seconds
from minibroker.core.queue_message import Message
from minibroker.core.queue_options import QueueOptions, QueueStatistics
from minibroker.protocol import frames
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


def _encode_parked(result: object) -> object:
    assert isinstance(result, list)
    return encode_deliveries(result)


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
    # A fetch's deliveries must fit one frame of this connection: what does
    # not fit stays ready for the next fetch (see Queue.fetch).
    budget = session.frame_budget
    messages = queue.fetch(
        session, frame.max_messages, now, frame.visibility_timeout, budget
    )
    if messages or frame.wait <= 0:
        return encode_deliveries(messages)
    token = session.park(frame.id, _encode_parked)
    try:
        queue.wait(
            session,
            token,
            frame.max_messages,
            now,
            frame.wait,
            frame.visibility_timeout,
            budget,
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
