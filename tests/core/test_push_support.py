"""Core support for push-style front ends (AMQP): deliveries without a visibility
deadline, ready listeners, and per-namespace extension state."""

from __future__ import annotations

from dataclasses import dataclass

from minibroker.core.broker import Broker
from minibroker.core.namespace import Namespace
from minibroker.core.peer import Peer
from minibroker.core.queue_options import UNTIL_SETTLED
from minibroker.core.queues import Queue, QueueOptions


@dataclass
class In:
    body: bytes
    headers: dict[str, str] | None = None


class Conn:
    def __init__(self, conn_id: int) -> None:
        self.conn_id = conn_id

    def resolve(self, token: int, result: object) -> None: ...
    def reject(self, token: int, error: object) -> None: ...
    def push_ready(self, source: object) -> None: ...
    def kick(self, error: object) -> None: ...


def _queue(broker: Broker, name: str = "q") -> Queue:
    queues = broker.namespace().queues
    queues.declare(name, QueueOptions(visibility_timeout=5), now=0.0)
    return queues.get(name)


def test_until_settled_deliveries_never_time_out_and_arm_no_timer() -> None:
    broker = Broker()
    queue = _queue(broker)
    queue.put([In(b"a")], 0.0)
    timers_before = len(broker.timers)
    [m] = queue.fetch(Conn(1), 1, 0.0, UNTIL_SETTLED)
    assert len(broker.timers) == timers_before
    broker.on_time(10**9)
    assert (queue.ready_count, queue.statistics().in_flight) == (0, 1)
    queue.nack(Conn(1), [m.delivery_id], 1.0)
    assert queue.ready_count == 1


def test_until_settled_deliveries_come_back_when_the_holder_disconnects() -> None:
    broker = Broker()
    queue = _queue(broker)
    queue.put([In(b"a"), In(b"b")], 0.0)
    queue.fetch(Conn(1), 2, 0.0, UNTIL_SETTLED)
    broker.disconnect(Conn(1), broker.namespace(), 1.0)
    [first, second] = queue.fetch(Conn(2), 2, 1.0)
    assert (first.body, first.delivery_count, second.body) == (b"a", 2, b"b")


def test_ready_listeners_hear_of_puts_and_requeues_and_may_fetch_inside() -> None:
    broker = Broker()
    queue = _queue(broker)
    taken: list[bytes] = []
    consumer = Conn(7)

    def listener(q: Queue, now: float) -> None:
        for m in q.fetch(consumer, 10, now, UNTIL_SETTLED):
            taken.append(m.body)

    queue.ready_listeners.append(listener)
    queue.put([In(b"1"), In(b"2")], 0.0)
    assert taken == [b"1", b"2"] and queue.ready_count == 0
    held = list(queue.inspect(10).in_flight)
    queue.nack(consumer, [held[0].delivery_id], 1.0)  # requeue: ready again, taken again
    assert taken == [b"1", b"2", b"1"]
    queue.ready_listeners.remove(listener)
    queue.put([In(b"3")], 2.0)
    assert taken == [b"1", b"2", b"1"] and queue.ready_count == 1


def test_listeners_come_after_parked_fetches() -> None:
    broker = Broker()
    queue = _queue(broker)
    heard: list[int] = []
    queue.ready_listeners.append(lambda q, now: heard.append(q.ready_count))

    class Waiting(Conn):
        got: object = None

        def resolve(self, token: int, result: object) -> None:
            self.got = result

    waiting = Waiting(3)
    queue.wait(waiting, 1, 1, 0.0, timeout=5)
    queue.put([In(b"x")], 0.0)
    assert waiting.got is not None and heard == []  # nothing left to tell
    queue.put([In(b"y")], 0.0)
    assert heard == [1]


class Extension:
    def __init__(self, namespace: Namespace) -> None:
        self.namespace = namespace
        self.events: list[str] = []

    def disconnect(self, peer: Peer, now: float) -> None:
        self.events.append(f"disconnect {peer.conn_id}")

    def sync(self) -> None:
        self.events.append("sync")

    def close(self) -> None:
        self.events.append("close")

    def destroy(self) -> None:
        self.events.append("destroy")


def test_namespace_extension_is_made_once_and_hears_what_models_hear() -> None:
    broker = Broker()
    ns = broker.namespace("t")
    ext = ns.extension("front", Extension)
    assert ns.extension("front", Extension) is ext and ext.namespace is ns
    broker.disconnect(Conn(4), ns, 0.0)
    broker.sync_storage()
    broker.drop_namespace("t")
    assert ext.events == ["disconnect 4", "sync", "destroy"]


def test_a_per_put_ttl_expires_messages_before_the_queue_ttl() -> None:
    broker = Broker()
    queues = broker.namespace().queues
    queues.declare("dead", QueueOptions(), now=0.0)
    queues.declare("q", QueueOptions(message_ttl=100, dead_letter_queue="dead"), now=0.0)
    queue = queues.get("q")
    queue.put([In(b"short")], 0.0, ttl=2)
    queue.put([In(b"long")], 0.0)
    broker.on_time(3.0)
    assert [m.body for m in queue.inspect(10).ready] == [b"long"]
    assert [m.body for m in queues.get("dead").inspect(10).ready] == [b"short"]


def test_a_per_put_ttl_applies_to_a_queue_without_its_own() -> None:
    broker = Broker()
    queue = _queue(broker)
    queue.put([In(b"brief")], 0.0, ttl=1)
    assert queue.fetch(Conn(1), 1, 2.0) == []
    assert queue.statistics().expired == 1


def test_a_dead_letter_route_replaces_the_dead_letter_queue() -> None:
    broker = Broker()
    queue = _queue(broker)
    routed: list[tuple[list[bytes], str]] = []

    def route(messages: list[object], reason: str, now: float) -> bool:
        routed.append(([m.body for m in messages], reason))  # type: ignore[attr-defined]
        return True

    queue.dead_letter_route = route
    queue.put([In(b"x")], 0.0)
    [m] = queue.fetch(Conn(1), 1, 0.0)
    queue.nack(Conn(1), [m.delivery_id], 1.0, requeue=False)
    assert routed == [([b"x"], "rejected")]
    assert queue.statistics().dead_lettered == 1
