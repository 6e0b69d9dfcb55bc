"""Queue requests through the protocol session: wire shapes, errors, long polls, confirms."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Client, MemoryOpener, Net

from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig, Limits
from minibroker.protocol import frames
from minibroker.protocol.codec import pack_frame


@pytest.fixture
def net() -> Net:
    return Net()


@pytest.fixture
def a(net: Net) -> Client:
    client = net.connect()
    client.call("queue.declare", queue="jobs")
    return client


def put(client: Client, queue: str, *bodies: bytes, **extra: Any) -> Any:
    return client.call("put", queue=queue, messages=[{"body": b, **extra} for b in bodies])


def delivery_ids(deliveries: list[dict[str, Any]]) -> list[int]:
    return [d["delivery_id"] for d in deliveries]


# ----------------------------------------------------------- result shapes


def test_round_trip_shapes(net: Net) -> None:
    a = net.connect()
    assert a.call("queue.declare", queue="jobs", max_deliveries=3) == {
        "queue": "jobs",
        "created": True,
    }
    assert a.call("queue.declare", queue="jobs", max_deliveries=3)["created"] is False
    assert a.call(
        "put", queue="jobs", messages=[{"body": b"a", "headers": {"k": "v"}}, {"body": b"b"}]
    ) == {"count": 2}
    got = a.call("fetch", queue="jobs", max_messages=10)
    published_at = net.broker.clock.wall_ms(net.now)
    assert got == [
        {
            "delivery_id": 1,
            "body": b"a",
            "delivery_count": 1,
            "published_at": published_at,
            "headers": {"k": "v"},
        },
        {"delivery_id": 2, "body": b"b", "delivery_count": 1, "published_at": published_at},
    ]
    assert a.call("nack", queue="jobs", deliveries=[2], delay=1.5) == {"count": 1}
    inspected = a.call("queue.inspect", queue="jobs")
    assert inspected == {
        "ready": [],
        "in_flight": [
            {
                "body": b"a",
                "delivery_count": 1,
                "published_at": published_at,
                "headers": {"k": "v"},
                "delivery_id": 1,
                "connection": a.conn_id,
                "visible_in": 30.0,
            }
        ],
        "delayed": [
            {"body": b"b", "delivery_count": 1, "published_at": published_at, "ready_in": 1.5}
        ],
    }
    assert a.call("ack", queue="jobs", deliveries=[1]) == {"count": 1}
    stats = a.call("queue.stats", queue="jobs")
    assert stats["queue"] == "jobs"
    assert stats["options"] == {
        "max_length": None,
        "max_length_bytes": None,
        "overflow": "reject_publish",
        "max_priority": None,
        "message_ttl": None,
        "visibility_timeout": 30.0,
        "max_deliveries": 3,
        "dead_letter_queue": None,
        "durable": False,
    }
    assert {k: stats[k] for k in ("ready", "in_flight", "delayed", "published", "acked")} == {
        "ready": 0,
        "in_flight": 0,
        "delayed": 1,
        "published": 2,
        "acked": 1,
    }
    assert a.call("queue.list") == [
        {"queue": "jobs", "ready": 0, "in_flight": 0, "consumers": 0, "durable": False}
    ]
    net.advance(2)
    assert a.call("queue.purge", queue="jobs") == {"purged": 1}
    assert a.call("queue.delete", queue="jobs") == {"messages": 0}
    assert a.call("queue.list") == []


def test_typed_frames_work_too(a: Client) -> None:
    rid = a.send_frame(frames.Put(id=77, queue="jobs", messages=[frames.MessageIn(b"x")]))
    assert a.result(rid) == {"count": 1}
    rid = a.send_frame(frames.Fetch(id=78, queue="jobs", max_messages=5))
    assert [d["body"] for d in a.result(rid)] == [b"x"]


def test_pipelined_requests_in_one_chunk(a: Client) -> None:
    chunk = b"".join(
        pack_frame({"op": "put", "id": 100 + i, "queue": "jobs", "messages": [{"body": b"%d" % i}]})
        for i in range(5)
    ) + pack_frame({"op": "fetch", "id": 200, "queue": "jobs", "max_messages": 10})
    a.send_bytes(chunk)
    assert [a.result(100 + i) for i in range(5)] == [{"count": 1}] * 5
    assert [d["body"] for d in a.result(200)] == [b"0", b"1", b"2", b"3", b"4"]


# ------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("op", "fields"),
    [
        ("put", {"messages": [{"body": b"x"}]}),
        ("fetch", {}),
        ("ack", {"deliveries": [1]}),
        ("nack", {"deliveries": [1]}),
        ("queue.delete", {}),
        ("queue.purge", {}),
        ("queue.stats", {}),
        ("queue.inspect", {}),
        ("fetch.cancel", {"fetch": 1}),
    ],
)
def test_unknown_queue(a: Client, op: str, fields: dict[str, Any]) -> None:
    err = a.error(op, queue="nope", **fields)
    assert err.code == "not_found"
    assert "nope" in err.message
    assert a.error(op, queue="bad name", **fields).code == "invalid_name"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"max_length": "ten"}, "bad_request"),
        ({"max_length": -1}, "bad_request"),
        ({"max_length": 2**63}, "bad_request"),
        ({"overflow": "drop_tail"}, "bad_request"),
        ({"message_ttl": -1.0}, "bad_request"),
        ({"message_ttl": "1s"}, "bad_request"),
        ({"visibility_timeout": 0}, "bad_request"),
        ({"visibility_timeout": 1e12}, "bad_request"),
        ({"max_deliveries": 0}, "bad_request"),
        ({"dead_letter_queue": "a b"}, "invalid_name"),
        ({"dead_letter_queue": "q2"}, "bad_request"),
        ({"durable": "yes"}, "bad_request"),
    ],
)
def test_declare_bad_options(net: Net, fields: dict[str, Any], code: str) -> None:
    a = net.connect()
    assert a.error("queue.declare", queue="q2", **fields).code == code
    assert a.call("queue.list") == []


def test_declare_conflict(a: Client) -> None:
    err = a.error("queue.declare", queue="jobs", visibility_timeout=5.0)
    assert err.code == "conflict"
    assert err.details["options"]["visibility_timeout"] == 30.0


@pytest.mark.parametrize(
    "fields",
    [
        {"max_messages": 0},
        {"max_messages": -5},
        {"max_messages": 2**63},
        {"max_messages": "1"},
        {"wait": -1.0},
        {"wait": 1e9},
        {"visibility_timeout": -1.0},
        {"visibility_timeout": 0.0},
    ],
)
def test_fetch_bad_counts(a: Client, fields: dict[str, Any]) -> None:
    assert a.error("fetch", queue="jobs", **fields).code == "bad_request"


def test_put_limits() -> None:
    net = Net(Broker(CoreConfig(limits=Limits(max_message_bytes=10, max_batch=2))))
    a = net.connect()
    a.call("queue.declare", queue="q")
    assert a.error("put", queue="q", messages=[{"body": b"x" * 11}]).code == "too_large"
    assert a.error("put", queue="q", messages=[{"body": b"1"}] * 3).code == "bad_request"
    assert a.error("put", queue="q", messages=[{"headers": {"a": "b"}}]).code == "bad_request"
    assert a.error("put", queue="q", messages=[{"body": b"1", "headers": {"a": 1}}]).code == (
        "bad_request"
    )
    assert a.call("queue.stats", queue="q")["published"] == 0


def test_ack_errors(net: Net, a: Client) -> None:
    b = net.connect()
    put(a, "jobs", b"1", b"2")
    mine = delivery_ids(a.call("fetch", queue="jobs", max_messages=2))
    err = b.error("ack", queue="jobs", deliveries=mine)
    assert err.code == "unknown_delivery"
    assert err.details["deliveries"] == mine
    err = a.error("ack", queue="jobs", deliveries=[mine[0], 12345, -1])
    assert err.details["deliveries"] == [12345, -1]
    assert a.error("ack", queue="jobs", deliveries=["x"]).code == "bad_request"
    assert a.error("ack", queue="jobs", deliveries=[2**64 - 1]).code == "unknown_delivery"
    assert a.error("nack", queue="jobs", deliveries=mine, delay=-1.0).code == "bad_request"
    assert a.call("queue.stats", queue="jobs")["in_flight"] == 2  # nothing changed
    assert a.call("ack", queue="jobs", deliveries=mine) == {"count": 2}
    assert a.call("ack", queue="jobs", deliveries=[]) == {"count": 0}


def test_overflow_error(net: Net) -> None:
    a = net.connect()
    a.call("queue.declare", queue="small", max_length=1)
    put(a, "small", b"1")
    err = a.error("put", queue="small", messages=[{"body": b"2"}])
    assert err.code == "overflow"
    assert err.details == {"queue": "small", "max_length": 1, "ready": 1}


# ------------------------------------------------------------- long polls


def test_long_poll_woken_by_put(net: Net, a: Client) -> None:
    b = net.connect()
    rid = b.send("fetch", queue="jobs", max_messages=5, wait=10.0)
    assert not b.has_response(rid)
    assert a.call("queue.stats", queue="jobs")["waiting_fetches"] == 1
    put(a, "jobs", b"hello")
    (delivery,) = b.result(rid)
    assert delivery["body"] == b"hello"
    assert b.call("ack", queue="jobs", deliveries=[delivery["delivery_id"]]) == {"count": 1}


def test_long_poll_times_out_empty(net: Net, a: Client) -> None:
    rid = a.send("fetch", queue="jobs", wait=2.0)
    net.advance(1.9)
    assert not a.has_response(rid)
    net.advance(0.1)
    assert a.result(rid) == []


def test_long_poll_fails_when_queue_deleted(net: Net, a: Client) -> None:
    b = net.connect()
    rid = b.send("fetch", queue="jobs", wait=30.0)
    a.call("queue.delete", queue="jobs")
    err = b.response(rid)
    assert (err["op"], err["code"]) == ("error", "not_found")


def test_fetch_cancel_answers_the_parked_fetch_first_and_empty(net: Net, a: Client) -> None:
    rid = a.send("fetch", queue="jobs", max_messages=5, wait=30.0)
    cancel = a.send("fetch.cancel", queue="jobs", fetch=rid)
    answered = [(i, f["result"]) for i, f in a.responses.items()]  # in arrival order
    assert answered == [(rid, []), (cancel, {"cancelled": True})]
    a.responses.clear()
    put(a, "jobs", b"x")  # nothing parked: the message stays ready
    stats = a.call("queue.stats", queue="jobs")
    assert (stats["ready"], stats["delivered"], stats["waiting_fetches"]) == (1, 0, 0)
    net.advance(60)  # the withdrawn fetch's wait timer answers nothing more
    assert a.pump() == []


def test_fetch_cancel_of_an_answered_fetch_is_false(net: Net, a: Client) -> None:
    rid = a.send("fetch", queue="jobs", wait=30.0)
    put(a, "jobs", b"x")
    (delivery,) = a.result(rid)
    assert a.call("fetch.cancel", queue="jobs", fetch=rid) == {"cancelled": False}
    # The delivery is still the client's to settle (a consumer nacks it).
    assert a.call("nack", queue="jobs", deliveries=[delivery["delivery_id"]]) == {"count": 1}


def test_fetch_cancel_names_only_this_connections_fetches_on_that_queue(
    net: Net, a: Client
) -> None:
    a.call("queue.declare", queue="other")
    b = net.connect()
    rid = a.send("fetch", queue="jobs", wait=30.0)
    assert b.call("fetch.cancel", queue="jobs", fetch=rid) == {"cancelled": False}
    assert a.call("fetch.cancel", queue="jobs", fetch=rid + 100) == {"cancelled": False}
    assert a.call("fetch.cancel", queue="other", fetch=rid) == {"cancelled": False}
    ping = a.send("ping")  # a request that answered at once is not a parked fetch
    assert a.call("fetch.cancel", queue="jobs", fetch=ping) == {"cancelled": False}
    assert a.result(ping) is None
    assert not a.has_response(rid)
    put(b, "jobs", b"x")  # the fetch is still parked and gets the message
    assert [d["body"] for d in a.result(rid)] == [b"x"]


def test_parked_fetch_of_closed_connection_is_forgotten(net: Net, a: Client) -> None:
    b = net.connect()
    b.send("fetch", queue="jobs", wait=30.0)
    b.close()
    put(a, "jobs", b"x")
    assert [d["body"] for d in a.call("fetch", queue="jobs")] == [b"x"]
    net.advance(60)


def test_closed_connection_hands_back_its_deliveries(net: Net, a: Client) -> None:
    b = net.connect()
    put(a, "jobs", b"1", b"2", b"3")
    b.call("fetch", queue="jobs", max_messages=2)
    assert a.call("queue.stats", queue="jobs")["consumers"] == 1
    b.close()
    got = a.call("fetch", queue="jobs", max_messages=5)
    assert [(d["body"], d["delivery_count"]) for d in got] == [(b"1", 2), (b"2", 2), (b"3", 1)]


def test_visibility_timeout_and_dead_letters_over_the_wire(net: Net) -> None:
    a = net.connect()
    a.call("queue.declare", queue="dead")
    a.call(
        "queue.declare",
        queue="work",
        visibility_timeout=5.0,
        max_deliveries=2,
        dead_letter_queue="dead",
    )
    put(a, "work", b"poison", headers={"trace": "t1"})
    a.call("fetch", queue="work")
    net.advance(5)
    assert a.call("fetch", queue="work", visibility_timeout=1.0)[0]["delivery_count"] == 2
    net.advance(1)
    assert a.call("fetch", queue="work") == []
    (dead,) = a.call("fetch", queue="dead")
    assert dead["headers"] == {
        "trace": "t1",
        "x-death-reason": "max_deliveries",
        "x-death-queue": "work",
        "x-death-count": "2",
        "x-death-hops": "1",
        "x-death-path": "work",
    }


# ------------------------------------------------------ durable confirms


def test_durable_put_confirm_waits_for_group_commit() -> None:
    broker = Broker(storage=MemoryOpener())
    net = Net(broker)
    a = net.connect()  # storage under fsync=batch: confirms wait for the fsync
    a.call("queue.declare", queue="memo")  # not durable: answered at once
    put(a, "memo", b"x")
    rid = a.send("queue.declare", queue="d", durable=True)
    assert not a.has_response(rid)  # the declaration itself is journaled
    broker.durability.release(broker.durability.generation)
    assert a.result(rid) == {"queue": "d", "created": True}
    rid = a.send("put", queue="d", messages=[{"body": b"1"}])
    assert not a.has_response(rid)
    broker.durability.sync()
    assert a.result(rid) == {"count": 1}
    rid = a.send("fetch", queue="d")
    assert a.has_response(rid)  # fetches write nothing
    (d,) = a.result(rid)
    rid = a.send("ack", queue="d", deliveries=[d["delivery_id"]])
    assert not a.has_response(rid)
    broker.durability.release(broker.durability.generation)
    assert a.result(rid) == {"count": 1}
    assert a.call("queue.stats", queue="d")["durable"] is True
