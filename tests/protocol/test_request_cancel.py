"""``request.cancel``: a requester that gave up withdraws its request.

Before it, a cancelled ``request()`` left the request parked in the broker
until its own deadline: counted as pending, written to a responder that
had not read it yet, and held by one that had (docs/request-reply.md,
"Giving up: withdrawing a request").
"""

from __future__ import annotations

from typing import Any

from helpers import Client, Net

from minibroker.protocol import frames
from minibroker.protocol.codec import pack_frame


def _requests(responder: Client) -> list[dict[str, Any]]:
    return [r for f in responder.pump() if f["op"] == "req" for r in f["requests"]]


def _rpc(net: Net, namespace: str = "") -> Any:
    return net.broker.namespace(namespace).rpc


def test_the_extension_is_announced() -> None:
    client = Net().connect(hello=False)
    hello = client.call("hello", version=frames.PROTOCOL_VERSION)
    assert "request.cancel" in hello["extensions"]


def test_a_withdrawn_request_held_by_a_responder_ends_now_and_its_reply_is_late() -> None:
    net = Net()
    requester, responder = net.connect(), net.connect()
    responder.call("respond", subject="svc")
    rid = requester.send("request", subject="svc", body=b"q", timeout=30.0)
    (incoming,) = _requests(responder)
    cancel = requester.next_id()
    requester.session.receive_data(
        pack_frame({"op": "request.cancel", "id": cancel, "request": rid}), net.now
    )
    error, answer = requester.pump()  # the request is answered first, then the cancel
    assert (error["id"], error["op"], error["code"]) == (rid, "error", "cancelled")
    assert (answer["id"], answer["result"]) == (cancel, {"cancelled": True})
    stats = _rpc(net).stats
    assert _rpc(net).snapshot().pending == 0
    assert stats.outcomes["abandoned"] == 1
    # The responder's answer comes too late, as after a deadline: dropped, counted.
    late = responder.send("reply", rid=incoming["rid"], body=b"a")
    assert responder.result(late) is False
    assert stats.replies_dropped == 1
    assert stats.outcomes["ok"] == 0
    net.advance(31.0)  # nothing left to time out
    assert stats.outcomes["timeout"] == 0


def test_a_withdrawn_request_not_yet_written_never_reaches_its_responder() -> None:
    net = Net()
    requester, responder = net.connect(), net.connect()
    responder.call("respond", subject="svc")
    rid = requester.send("request", subject="svc", body=b"q")
    # The cancel arrives before the responder's connection was drained.
    cancel = requester.send("request.cancel", request=rid)
    assert requester.result(cancel) == {"cancelled": True}
    assert requester.response(rid)["code"] == "cancelled"
    assert _requests(responder) == []
    assert _rpc(net).snapshot().pending == 0


def test_cancelling_what_is_not_a_waiting_request_is_not_an_error() -> None:
    net = Net()
    requester, responder = net.connect(), net.connect()
    responder.call("respond", subject="svc")
    rid = requester.send("request", subject="svc")
    (incoming,) = _requests(responder)
    responder.send("reply", rid=incoming["rid"], body=b"a", confirm=False)
    assert requester.result(rid) == {"body": b"a"}
    # Answered already (the cancel crossed the answer), never sent, a fetch.
    assert requester.call("request.cancel", request=rid) == {"cancelled": False}
    assert requester.call("request.cancel", request=12345) == {"cancelled": False}
    requester.call("queue.declare", queue="q")
    fetch = requester.send("fetch", queue="q", wait=30.0)
    assert requester.call("request.cancel", request=fetch) == {"cancelled": False}
    assert not requester.has_response(fetch)  # the fetch still waits
    assert _rpc(net).stats.outcomes == {**_rpc(net).stats.outcomes, "ok": 1, "abandoned": 0}


def test_another_connection_cannot_withdraw_a_request() -> None:
    net = Net()
    requester, other, responder = net.connect(), net.connect(), net.connect()
    responder.call("respond", subject="svc")
    rid = requester.send("request", subject="svc")
    assert other.call("request.cancel", request=rid) == {"cancelled": False}
    (incoming,) = _requests(responder)
    responder.send("reply", rid=incoming["rid"], body=b"a", confirm=False)
    assert requester.result(rid) == {"body": b"a"}


def test_the_frame_is_documented_as_an_open_op() -> None:
    # Needs no grant: it acts only on the connection's own requests.
    from minibroker.access.permissions import OPEN

    assert frames.RequestCancel.op in OPEN
