"""Python and Node.js clients on one broker, through each of the four models.

The Node side is clients/node (written from docs/protocol.md alone), driven
through the small scripts in tests/crosslang/node/; the Python side is the
blocking client. Each direction checks bodies byte for byte (binary bodies
included), headers, and the model's semantics across the language border.
"""

from __future__ import annotations

import base64
import threading

import pytest
from nodescript import NodeScript, requires_node

import minibroker
from minibroker.client.rpc import Reply, ServeHandle, SyncIncomingRequest
from minibroker.client.topics import TopicMessage

pytestmark = requires_node


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def test_python_producer_node_consumer_through_a_queue(minibroker_url: str) -> None:
    bodies = [bytes([i % 256, 0, 255]) + f"job-{i}".encode() for i in range(300)]
    with minibroker.connect_sync(minibroker_url) as mb:
        mb.declare_queue("jobs")
        with NodeScript("queue_consumer.mjs", minibroker_url, "jobs", str(len(bodies))) as node:
            # The consumer is already long-polling while these arrive.
            mb.put("jobs", bodies[0], headers={"from": "python", "n": "0"})
            for start in range(1, len(bodies), 50):
                mb.put_many("jobs", bodies[start : start + 50])
            received = [node.next() for _ in bodies]
            assert node.next() == {"done": len(bodies)}
            node.finish()
        assert [unb64(m["body"]) for m in received] == bodies
        assert received[0]["headers"] == {"from": "python", "n": "0"}
        assert all(m["headers"] is None for m in received[1:])
        assert all(m["deliveryCount"] == 1 for m in received)
        stats = mb.queue_stats("jobs")
        assert (stats.ready, stats.in_flight, stats.acked) == (0, 0, len(bodies))


def test_node_publisher_python_subscribers_on_topics(minibroker_url: str) -> None:
    shared: list[tuple[str, bytes]] = []  # what the two group members got, together
    all_shared = threading.Event()

    def member(message: TopicMessage) -> None:
        shared.append((message.topic, message.body))
        if len(shared) == 11:
            all_shared.set()

    with (
        minibroker.connect_sync(minibroker_url) as mb,
        mb.subscribe("orders.*") as created,
        mb.subscribe("orders.#") as everything,
        mb.subscribe("orders.#", group="workers", callback=member),
        mb.subscribe("orders.#", group="workers", callback=member),
        NodeScript("topic_publisher.mjs", minibroker_url) as node,
    ):
        node.send({"topic": "orders.created", "body": b64(b"\x00\xffone"), "headers": {"k": "v"}})
        # Three matches: two plain subscriptions and the group (one member gets it).
        assert node.next() == {"subscriptions": 3, "queues": 0}
        batch = [{"body": b64(f"paid-{i}".encode())} for i in range(10)]
        node.send({"topic": "orders.eu.paid", "batch": batch})
        # "orders.*" does not match "orders.eu.paid": the other plain one and the group do.
        assert node.next() == {"subscriptions": 20, "queues": 0}
        node.close_stdin()
        node.finish()

        first = created.get(timeout=30)
        assert (first.topic, first.body, first.headers) == (
            "orders.created",
            b"\x00\xffone",
            {"k": "v"},
        )
        seen = [everything.get(timeout=30) for _ in range(11)]
        assert [m.body for m in seen] == [b"\x00\xffone"] + [
            f"paid-{i}".encode() for i in range(10)
        ]
        assert [m.topic for m in seen] == ["orders.created"] + ["orders.eu.paid"] * 10
        assert seen[1].headers is None
        assert all_shared.wait(30)
        assert sorted(shared) == sorted((m.topic, m.body) for m in seen)


def test_log_appended_from_node_replayed_from_python(minibroker_url: str) -> None:
    count = 1001
    with NodeScript("log_appender.mjs", minibroker_url, "events", str(count)) as node:
        assert node.next() == {"first": 0, "next": count}
        node.finish()

    def expected(i: int) -> tuple[int, bytes, bytes, dict[str, str] | None]:
        body = bytes([i % 256, 255 - i % 256]) + f"record-{i}".encode()
        return i, f"key-{i % 7}".encode(), body, ({"i": str(i)} if i % 2 == 0 else None)

    with minibroker.connect_sync(minibroker_url) as mb:
        records = []
        offset = 0
        while offset < count:
            page = mb.read("events", start=offset, max_records=300)
            records.extend(page)
            offset = page[-1].offset + 1
        assert [(r.offset, r.key, r.body, r.headers) for r in records] == [
            expected(i) for i in range(count)
        ]
        timestamps = [r.timestamp_ms for r in records]
        assert timestamps == sorted(timestamps)
        # And replayed through a tail, as an event-sourced projection would.
        with mb.tail("events", start="earliest") as tail:
            replayed = [next(iter(tail)).offset for _ in range(count)]
        assert replayed == list(range(count))


def test_python_requester_node_responder(minibroker_url: str) -> None:
    with (
        NodeScript("responder.mjs", minibroker_url, "svc.node") as node,
        minibroker.connect_sync(minibroker_url) as mb,
    ):
        assert node.next() == {"ready": True}
        reply = mb.request("svc.node", b"\x00\x01hello", timeout=10)
        assert reply.body == b"\x00\x01hello"
        assert reply.headers == {"served-by": "node", "subject": "svc.node"}
        upper = mb.request("svc.node", b"shout", headers={"mode": "upper"}, timeout=10)
        assert (upper.body, upper.headers) == (b"SHOUT", {"served-by": "node"})
        with pytest.raises(minibroker.ResponderError, match="Error: the node handler failed"):
            mb.request("svc.node", b"fail", timeout=10)
        with pytest.raises(minibroker.ResponderError) as explained:
            mb.request("svc.node", b"explain", timeout=10)
        assert explained.value.message == "explained by node"
        node.close_stdin()
        assert node.next() == {"served": 4}
        node.finish()
        with pytest.raises(minibroker.NoResponders):
            mb.request("svc.node", b"anyone?", timeout=10)


def test_node_requester_python_responder(minibroker_url: str) -> None:
    def handler(req: SyncIncomingRequest) -> object:
        if req.body == b"fail":
            raise ValueError("the python handler failed")
        return Reply(req.body[::-1], {"served-by": "python"})

    with minibroker.connect_sync(minibroker_url) as mb:
        handle = ServeHandle()
        server = threading.Thread(
            target=mb.serve, args=("svc.python", handler), kwargs={"handle": handle}, daemon=True
        )
        server.start()
        assert handle.ready.wait(30)
        try:
            with NodeScript("requester.mjs", minibroker_url) as node:
                node.send({"subject": "svc.python", "body": b64(b"\x00abc\xff"), "timeout": 10})
                assert node.next() == {
                    "body": b64(b"\xffcba\x00"),
                    "headers": {"served-by": "python"},
                }
                node.send({"subject": "svc.python", "body": b64(b"fail"), "timeout": 10})
                failed = node.next()
                assert failed["error"] == "responder_error"
                assert failed["message"] == "ValueError: the python handler failed"
                node.send({"subject": "svc.nobody", "body": b64(b"x"), "timeout": 10})
                assert node.next()["error"] == "no_responders"
                node.close_stdin()
                node.finish()
        finally:
            handle.stop()
            server.join(30)
