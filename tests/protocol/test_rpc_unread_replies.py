"""A requester that parks requests and stops reading cannot make the broker
hold their replies (docs/request-reply.md, "A requester that stops reading").

The connection stops reading a client past its high-water mark, but the
replies to requests it already parked come when their responders answer.
Before the bound, each was appended to the requester's output whether or not
it read: 200 replies of 1 MiB held 200 MB of broker memory. Now a reply to a
session holding more than ``max_reply_backlog`` unsent bytes is dropped, its
responder is told ``False`` as for a late reply, and the request is answered
with a small ``limit_exceeded``.
"""

from __future__ import annotations

from typing import Any

from helpers import Client, Net

from minibroker.errors import LimitExceeded
from minibroker.protocol.codec import pack_frame
from minibroker.protocol.session import SessionSettings

REPLY = 100 * 1024
BACKLOG = 256 * 1024
PARKED = 20


def _requests(responder: Client) -> list[dict[str, Any]]:
    return [r for f in responder.pump() if f["op"] == "req" for r in f["requests"]]


def _park(client: Client, net: Net, count: int) -> list[int]:
    """Send ``count`` requests without reading anything back (a client that stopped reading)."""
    ids = []
    for _ in range(count):
        request_id = client.next_id()
        frame = {"op": "request", "id": request_id, "subject": "svc", "body": b"q"}
        client.session.receive_data(pack_frame(frame), net.now)
        ids.append(request_id)
    return ids


def test_replies_to_a_requester_that_stopped_reading_are_dropped_past_the_backlog() -> None:
    net = Net()
    settings = SessionSettings(outbound_high_water=64 * 1024, max_reply_backlog=BACKLOG)
    stalled = net.connect(settings=settings)
    other = net.connect()
    responder = net.connect()
    responder.call("respond", subject="svc")
    parked = _park(stalled, net, PARKED)
    incoming = _requests(responder)
    assert len(incoming) == PARKED
    body = b"r" * REPLY
    delivered = []
    for request in incoming:
        confirm = responder.send("reply", rid=request["rid"], body=body, confirm=True)
        delivered.append(responder.result(confirm))
        # What the broker holds for the stalled requester stays under the
        # backlog plus one reply (and the small error frames).
        assert stalled.session.outbound_bytes <= BACKLOG + REPLY + PARKED * 200
        # Another requester of the same responder is served meanwhile.
        call = other.send("request", subject="svc", body=b"other")
        (mine,) = _requests(responder)
        responder.send("reply", rid=mine["rid"], body=b"yours", confirm=False)
        assert other.result(call) == {"body": b"yours"}
    kept = delivered.count(True)
    assert 0 < kept < PARKED
    # Written while the backlog had room, then dropped: never the other way round.
    assert delivered == [True] * kept + [False] * (PARKED - kept)
    assert BACKLOG <= kept * REPLY <= BACKLOG + 2 * REPLY
    stats = net.broker.namespace("").rpc.stats
    assert stats.replies_dropped == PARKED - kept
    assert stats.outcomes["unread"] == PARKED - kept
    assert stats.outcomes["ok"] == kept + PARKED  # the other requester's calls too
    assert net.broker.namespace("").rpc.snapshot().pending == 0
    # Reading again, the requester finds its replies, then an error per dropped one.
    for request_id in parked[:kept]:
        assert stalled.result(request_id) == {"body": body}
    for request_id in parked[kept:]:
        frame = stalled.response(request_id)
        assert frame["code"] == "limit_exceeded"
        assert frame["details"] == {"subject": "svc"}
        assert len(pack_frame(frame)) < 200
    assert stalled.session.outbound_bytes == 0


def test_a_responder_error_is_dropped_the_same_way() -> None:
    """A ``fail`` message is as big as the responder makes it: bounded too."""
    net = Net()
    settings = SessionSettings(outbound_high_water=1024, max_reply_backlog=BACKLOG)
    stalled = net.connect(settings=settings)
    responder = net.connect()
    responder.call("respond", subject="svc")
    first, second = _park(stalled, net, 2)
    (one, two) = _requests(responder)
    big = responder.send("reply", rid=one["rid"], body=b"x" * (BACKLOG + 1), confirm=True)
    assert responder.result(big) is True
    failed = responder.send("reply", rid=two["rid"], error="e" * 1000, confirm=True)
    assert responder.result(failed) is False
    assert stalled.result(first) == {"body": b"x" * (BACKLOG + 1)}
    error = stalled.response(second)
    assert error["code"] == "limit_exceeded"
    assert "e" * 100 not in error["message"]


def test_the_requester_gets_limit_exceeded_not_its_timeout() -> None:
    net = Net()
    settings = SessionSettings(outbound_high_water=1024, max_reply_backlog=1024)
    stalled = net.connect(settings=settings)
    responder = net.connect()
    responder.call("respond", subject="svc")
    first, second = _park(stalled, net, 2)
    (one, two) = _requests(responder)
    responder.send("reply", rid=one["rid"], body=b"x" * 2048, confirm=False)
    responder.send("reply", rid=two["rid"], body=b"y" * 2048, confirm=False)
    assert stalled.result(first) == {"body": b"x" * 2048}
    try:
        stalled.result(second)
    except LimitExceeded as exc:
        assert "not reading" in exc.message
    else:
        raise AssertionError("the second reply was not dropped")
    net.advance(60.0)  # nothing left to time out
    assert net.broker.namespace("").rpc.stats.outcomes["timeout"] == 0


def test_the_backlog_is_at_least_the_high_water_mark() -> None:
    """A client reading normally is fed up to its high-water mark; its replies
    are never dropped below it, however low the backlog is set."""
    net = Net()
    settings = SessionSettings(outbound_high_water=BACKLOG, max_reply_backlog=1)
    requester = net.connect(settings=settings)
    responder = net.connect()
    responder.call("respond", subject="svc")
    first, second = _park(requester, net, 2)
    (one, two) = _requests(responder)
    responder.send("reply", rid=one["rid"], body=b"x" * 1024, confirm=False)
    confirm = responder.send("reply", rid=two["rid"], body=b"y", confirm=True)
    assert responder.result(confirm) is True
    assert requester.result(first) == {"body": b"x" * 1024}
    assert requester.result(second) == {"body": b"y"}
