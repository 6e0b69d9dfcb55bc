"""A request id still waiting for its answer cannot be reused (issue 14 item 9).

Two parked fetches with one id were both accepted: ``fetch.cancel`` then
withdrew one, and the other later delivered messages under that same id,
to a client that believed the id finished. Now the second request is
refused with ``duplicate_id`` and the first carries on untouched.
"""

from __future__ import annotations

from helpers import MemoryOpener, Net

from minibroker.core.broker import Broker
from minibroker.storage import MemoryLog


def test_a_second_fetch_with_a_parked_fetchs_id_is_refused() -> None:
    net = Net()
    a = net.connect()
    a.call("queue.declare", queue="q")
    a.send("fetch", id=7, queue="q", wait=30.0)
    a.send("fetch", id=7, queue="q", wait=30.0)
    error = a.response(7)
    assert (error["op"], error["code"]) == ("error", "duplicate_id")
    assert error["details"] == {"id": 7}
    assert a.call("queue.stats", queue="q")["waiting_fetches"] == 1
    assert a.call("fetch.cancel", queue="q", fetch=7) == {"cancelled": True}
    assert a.result(7) == []
    a.call("put", queue="q", messages=[{"body": b"x"}])
    assert not a.has_response(7)  # nothing is delivered under the old id
    assert a.call("queue.stats", queue="q")["ready"] == 1


def test_an_id_is_free_again_once_answered() -> None:
    net = Net()
    a = net.connect()
    a.call("queue.declare", queue="q")
    a.send("fetch", id=9, queue="q", wait=1.0)
    net.advance(1.0)
    assert a.result(9) == []
    a.send("fetch", id=9, queue="q", wait=1.0)
    a.call("put", queue="q", messages=[{"body": b"x"}])
    assert [d["body"] for d in a.result(9)] == [b"x"]


def test_a_request_reusing_a_pending_request_id_is_refused() -> None:
    net = Net()
    a, b = net.connect(), net.connect()
    b.call("respond", subject="svc")
    a.send("request", id=3, subject="svc", body=b"first")
    a.send("request", id=3, subject="svc", body=b"second")
    assert a.response(3)["code"] == "duplicate_id"
    [push] = b.pump()
    assert [r["body"] for r in push["requests"]] == [b"first"]
    b.call("reply", rid=push["requests"][0]["rid"], body=b"answer")
    assert a.result(3) == {"body": b"answer"}


def test_a_held_durable_confirm_keeps_its_id_until_it_is_sent() -> None:
    broker = Broker(storage=MemoryOpener(), memory_log=MemoryLog)
    net = Net(broker)
    a = net.connect()  # storage under fsync=batch: confirms wait for the fsync
    a.send("queue.declare", id=5, queue="d", durable=True)
    assert a.error("ping", id=5).code == "duplicate_id"
    broker.durability.release(broker.durability.generation)
    assert a.result(5) == {"queue": "d", "created": True}
    assert a.call("ping", id=5, data=b"free") == b"free"


def test_other_connections_may_use_the_same_id() -> None:
    net = Net()
    a, b = net.connect(), net.connect()
    a.call("queue.declare", queue="q")
    a.send("fetch", id=4, queue="q", wait=30.0)
    b.send("fetch", id=4, queue="q", wait=30.0)
    assert not a.has_response(4) and not b.has_response(4)
