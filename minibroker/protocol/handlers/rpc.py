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
* ``request.cancel {request}`` -> ok ``{"cancelled": bool}``, the withdrawn
  request answered first with ``cancelled`` (a caller that gave up);
* ``reply {rid, body?, headers?, error?, confirm?}`` -> ok ``true`` when a
  requester was waiting, ``false`` when the request had already ended (never
  an error, so a slow responder's loop keeps running). With ``confirm``
  false (what the clients send unless asked to confirm) no ``ok`` is sent at
  all, only errors: the responder waits for none, and the frame would cost
  the broker a write and the responder a wake-up per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from minibroker.access.permissions import permission_for
from minibroker.core.rpc import Responder, RpcReply
from minibroker.protocol import codec, frames
from minibroker.protocol.handlers.messages import is_str_map
from minibroker.protocol.handlers.parked import NO_RESPONSE, PARKED
from minibroker.value_class import fields

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
    _route(session, frame.id, frame.subject, frame.body, frame.headers, frame.timeout, now)
    return PARKED


def _route(
    session: Session,
    request_id: int,
    subject: str,
    body: bytes,
    headers: dict[str, str] | None,
    timeout: float,
    now: float,
) -> None:
    """Park request ``request_id`` and hand it to the router (both paths)."""
    token = session.park(request_id, _encode_reply)
    try:
        session.ns.rpc.request(session, token, subject, body, headers, timeout, now)
    except BaseException:
        session.unpark(token)
        raise


def reply(session: Session, frame: frames.Reply, now: float) -> Any:
    delivered = session.ns.rpc.reply(
        session, frame.rid, frame.body, frame.headers, frame.error, now
    )
    # confirm false: the responder does not wait for this answer, so it is
    # not sent (one write here, one wake-up and two reads in the responder).
    return delivered if frame.confirm else NO_RESPONSE


def request_cancel(session: Session, frame: frames.RequestCancel, now: float) -> dict[str, bool]:
    """Withdraw a ``request`` of this connection whose caller gave up.

    The request is answered with ``cancelled`` before this frame's own
    answer, and ends for its responder as a late one does. ``cancelled`` is
    False, not an error, when the id names no request of this connection
    still waiting (answered, timed out, never sent, or a parked fetch): the
    cancel crossed its answer, which the client then drops.
    """
    token = session.parked_token(frame.request)
    cancelled = token is not None and session.ns.rpc.withdraw(session, token)
    return {"cancelled": cancelled}


# ----------------------------------------------------------------- fast paths
#
# ``request`` and an unconfirmed ``reply`` are the frames of every
# request/reply call (two of the four; the other two the broker writes). The
# session hands each such frame's msgpack map to its fast path here before
# decoding it: the path checks the common shape inline (exact types, no
# ``confirm``), then makes the same checks and core call the generic
# ``decode_request`` + ``Session._dispatch`` + handler would, without the
# frame object, the op table, the decoder's generator layers or the
# durability bookkeeping those ops never need. It returns False, having done
# nothing, for anything else (a text body, a text timeout, a confirmed
# reply, a frame before hello, an id in use, the x-ray on), which then goes
# the generic way and gets its precise answer or error. So the wire and
# every answer stay the generic path's: tests/protocol/test_rpc_fast_path.py
# runs random frames through a session with and without the fast paths and
# compares every byte written and the router's state.

#: ``(session, msgpack map, now) -> taken``; False: not taken, nothing done.
FastOp = Callable[["Session", dict[Any, Any], float], bool]

_REQUEST_PERMISSION: Final = permission_for(frames.RequestCall.op)
_REPLY_PERMISSION: Final = permission_for(frames.Reply.op)
#: The generic decoder's defaults, from the frame classes.
_REQUEST_DEFAULTS: Final = {f.name: f.default for f in fields(frames.RequestCall)}
_DEFAULT_TIMEOUT: Final = float(_REQUEST_DEFAULTS["timeout"])  # type: ignore[arg-type]


def _plain_content(raw: dict[Any, Any]) -> tuple[bytes, dict[str, str] | None] | None:
    """A fast-path map's body (b"" when absent) and headers, or None for any
    other shape (the generic decoder then names what is wrong)."""
    body = raw.get("body")
    if body is None:
        body = b""
    elif type(body) is not bytes:
        return None
    headers = raw.get("headers")
    if headers is not None and not is_str_map(headers):
        return None
    return body, headers


def fast_request(session: Session, raw: dict[Any, Any], now: float) -> bool:
    """A ``request`` map: park and route it as ``request`` does, or return False."""
    request_id = raw.get("id")
    subject = raw.get("subject")
    if type(request_id) is not int or request_id < 0 or type(subject) is not str:
        return False
    content = _plain_content(raw)
    if content is None:
        return False
    body, headers = content
    timeout = raw.get("timeout")
    if timeout is None:
        timeout = _DEFAULT_TIMEOUT
    elif type(timeout) is int:
        timeout = float(timeout)  # as the generic decoder converts it (``timeout=5``)
    elif type(timeout) is not float:
        return False
    if not session.takes_fast_path(request_id):
        return False
    try:
        grants = session.grants
        if grants is not None:
            # The generic dispatch's check, on the frame it would have built.
            frame = frames.RequestCall(request_id, subject, body, headers, timeout)
            grants.authorize(_REQUEST_PERMISSION, frame)
        _route(session, request_id, subject, body, headers, timeout, now)
    except Exception as exc:
        session.answer_failure(request_id, frames.RequestCall.op, exc)
    return True


def fast_reply(session: Session, raw: dict[Any, Any], now: float) -> bool:
    """A ``reply`` map with ``confirm`` false: hand it to the router as ``reply``
    does (nothing is written unless it fails), or return False."""
    request_id = raw.get("id")
    rid = raw.get("rid")
    if (
        type(request_id) is not int
        or request_id < 0
        or type(rid) is not int
        or raw.get("confirm") is not False
    ):
        return False
    content = _plain_content(raw)
    if content is None:
        return False
    body, headers = content
    error = raw.get("error")
    if error is not None and type(error) is not str:
        return False
    if not session.takes_fast_path(request_id):
        return False
    try:
        grants = session.grants
        if grants is not None:
            frame = frames.Reply(request_id, rid, body, headers, error, False)
            grants.authorize(_REPLY_PERMISSION, frame)
        session.ns.rpc.reply(session, rid, body, headers, error, now)
    except Exception as exc:
        session.answer_failure(request_id, frames.Reply.op, exc)
    return True


#: What ``Session.receive_data`` tries before the generic decode: op -> fast path.
FAST_OPS: Final[dict[str, FastOp]] = {
    frames.RequestCall.op: fast_request,
    frames.Reply.op: fast_reply,
}


def encode_requests(source: Responder, budget: int) -> tuple[bytes, bool]:
    """Drain a responder's outbox into one ``req`` frame within ``budget`` bytes."""
    taken = source.take(budget)
    if not taken:
        return b"", False
    return codec.req_rows(source.sub_id, taken), source.has_queued()
