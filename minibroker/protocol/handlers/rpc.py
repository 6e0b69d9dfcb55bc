"""Request/reply ops: ``respond``, ``request``, ``reply``, and the ``req`` push.

A ``request`` is parked: its response is sent only when the core finishes it
(the reply, a responder error, the deadline, or the responder going away),
through ``Session.resolve``/``reject``. So one request costs four frames on
the critical path: request in, ``req`` push out, ``reply`` in, response out.

Wire shapes (see docs/request-reply.md):

* ``respond {subject, group?}`` -> ok ``{"sub": id}``; then pushes
  ``{"op": "req", "sub", "requests": [{"rid", "subject", "body",
  "headers"?, "timeout"}]}``, several requests per frame when several wait;
* ``request {subject, body?, headers?, timeout?}`` -> ok ``{"body",
  "headers"?}`` or an error (no_responders, timeout, responder_gone,
  responder_error, ...);
* ``reply {rid, body?, headers?, error?, confirm?}`` -> ok ``true`` when a
  requester was waiting, ``false`` when the request had already ended (never
  an error, so a slow responder's loop keeps running). With ``confirm``
  false (what the clients send unless asked to confirm) no ``ok`` is sent at
  all, only errors: the responder waits for none, and the frame would cost
  the broker a write and the responder a wake-up per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from minibroker.core.rpc import Responder, RpcReply
from minibroker.protocol import codec, frames
from minibroker.protocol.handlers.parked import NO_RESPONSE, PARKED

if TYPE_CHECKING:
    from minibroker.protocol.session import Session


def _encode_reply(reply: RpcReply) -> dict[str, Any]:
    if reply.headers:
        return {"body": reply.body, "headers": reply.headers}
    return {"body": reply.body}


def respond(session: Session, frame: frames.Respond, now: float) -> dict[str, int]:
    router = session.ns.rpc
    sub_id = session.add_subscription(
        lambda sub_id: router.add_responder(session, sub_id, frame.subject, frame.group)
    )
    return {"sub": sub_id}


def request(session: Session, frame: frames.RequestCall, now: float) -> Any:
    token = session.park(frame.id, _encode_reply)
    try:
        session.ns.rpc.request(
            session, token, frame.subject, frame.body, frame.headers, frame.timeout, now
        )
    except BaseException:
        session.unpark(token)
        raise
    return PARKED


def reply(session: Session, frame: frames.Reply, now: float) -> Any:
    delivered = session.ns.rpc.reply(
        session, frame.rid, frame.body, frame.headers, frame.error, now
    )
    # confirm false: the responder does not wait for this answer, so it is
    # not sent (one write here, one wake-up and two reads in the responder).
    return delivered if frame.confirm else NO_RESPONSE


def encode_requests(source: Responder, budget: int) -> tuple[bytes, bool]:
    """Drain a responder's outbox into one ``req`` frame within ``budget`` bytes."""
    taken = source.take(budget)
    if not taken:
        return b"", False
    return codec.req_rows(source.sub_id, taken), source.has_queued()
