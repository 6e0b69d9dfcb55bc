"""``pause`` and ``resume``: a client holds back one push stream, not its connection.

A client whose buffer for a log tail or a responder is full pauses that
subscription instead of no longer reading its socket, which would also hold
back the answers to its other calls (issue 14). While paused the source keeps
what it has (the tail its cursor, the responder its outbox) and nothing is
pushed; ``resume`` carries on from exactly there.
"""

from __future__ import annotations

from helpers import Net

from minibroker.protocol.session import SessionSettings
from minibroker.record_format import decode_records


def pushed_bodies(frames: list[dict[str, object]]) -> list[bytes]:
    return [
        r.body
        for f in frames
        if f["op"] == "records"
        for r in decode_records(f["data"])  # type: ignore[arg-type]
    ]


def test_a_paused_tail_pushes_nothing_and_resumes_where_it_stopped() -> None:
    net = Net()
    a, b = net.connect(), net.connect()
    a.call("log.create", log="ev")
    sub = a.call("tail", log="ev", start=0)["sub"]
    b.call("append", log="ev", records=[b"0", b"1"])
    assert pushed_bodies(a.pump()) == [b"0", b"1"]
    assert a.call("pause", sub=sub) is None
    assert a.call("pause", sub=sub) is None  # idempotent
    b.call("append", log="ev", records=[b"2", b"3"])
    b.call("append", log="ev", records=[b"4"])
    # Appending on the paused connection is answered at once.
    assert a.call("append", log="ev", records=[b"5"]) == {"offset": 5, "count": 1}
    assert pushed_bodies(a.other) == [b"0", b"1"]
    assert a.call("resume", sub=sub) is None
    assert pushed_bodies(a.other) == [b"0", b"1", b"2", b"3", b"4", b"5"]
    b.call("append", log="ev", records=[b"6"])
    a.pump()
    assert pushed_bodies(a.other)[-1] == b"6"
    assert a.call("resume", sub=sub) is None  # resuming a live tail changes nothing
    assert not a.pump()


def test_pausing_a_tail_in_the_middle_of_a_backlog() -> None:
    """A tail paused while it still had records to send (not idle) resumes with them."""
    net = Net()
    a = net.connect(settings=SessionSettings(outbound_high_water=256))
    a.call("log.create", log="ev")
    a.call("append", log="ev", records=[b"%d" % i for i in range(100)])
    sub = a.call("tail", log="ev", start=0)["sub"]  # the first 256 bytes' worth came with it
    first = pushed_bodies(a.other)
    assert 0 < len(first) < 100
    a.call("pause", sub=sub)
    assert not a.pump()
    a.call("resume", sub=sub)
    while a.session.has_output():
        a.pump()
    assert pushed_bodies(a.other) == [b"%d" % i for i in range(100)]


def test_a_paused_responder_keeps_its_requests_until_resumed() -> None:
    net = Net()
    requester, responder = net.connect(), net.connect()
    sub = responder.call("respond", subject="svc")["sub"]
    responder.call("pause", sub=sub)
    rids = [requester.send("request", subject="svc", body=b"%d" % i) for i in range(3)]
    assert not responder.pump()
    responder.call("resume", sub=sub)
    pushed = [r for f in responder.other if f["op"] == "req" for r in f["requests"]]
    assert [r["body"] for r in pushed] == [b"0", b"1", b"2"]
    for incoming in pushed:
        assert responder.call("reply", rid=incoming["rid"], body=incoming["body"].upper()) is True
    assert [requester.result(rid) for rid in rids] == [{"body": b"%d" % i} for i in range(3)]


def test_pause_and_resume_need_a_subscription_of_this_connection() -> None:
    net = Net()
    a, b = net.connect(), net.connect()
    a.call("log.create", log="ev")
    sub = a.call("tail", log="ev", start=0)["sub"]
    assert b.error("pause", sub=sub).code == "not_found"
    assert b.error("resume", sub=sub).code == "not_found"
    a.call("pause", sub=sub)
    a.call("unsubscribe", sub=sub)
    assert a.error("resume", sub=sub).code == "not_found"
    assert a.error("pause", sub="x").code == "bad_request"

