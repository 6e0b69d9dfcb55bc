"""Dead-letter cycles through exchanges end as in RabbitMQ (sans-I/O, time passed by hand).

RabbitMQ drops a message instead of dead-lettering it into a queue it was
already dead-lettered from, unless it was rejected somewhere in between.
Before, minibroker only bounded a cycle within one operation (8 hops): with
a TTL, a message went round once per TTL forever. The tests count the hops
over many TTLs, so on the old code they fail instead of running forever.
"""

from __future__ import annotations

from typing import Any

from amqp_wire import split_frames
from pamqp import body, commands, frame, header
from test_amqp_session import _open

from minibroker.amqp.connection import AmqpSession
from minibroker.core.broker import Broker
from minibroker.core.queues import Queue

NOW = 1000.0


def _declare(session: AmqpSession, queue: str, **arguments: Any) -> None:
    session.receive_data(
        frame.marshal(commands.Queue.Declare(queue=queue, arguments=arguments or None), 1), NOW
    )
    session.data_to_send()


def _send(
    session: AmqpSession,
    payload: bytes,
    *,
    routing_key: str,
    exchange: str = "",
    properties: commands.Basic.Properties | None = None,
    now: float = NOW,
) -> None:
    session.receive_data(
        frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=routing_key), 1)
        + frame.marshal(
            header.ContentHeader(0, len(payload), properties or commands.Basic.Properties()), 1
        )
        + frame.marshal(body.ContentBody(payload), 1),
        now,
    )
    session.data_to_send()


def _get(session: AmqpSession, queue: str, now: float) -> tuple[Any, Any] | None:
    """basic.get with no_ack: (the content header's properties, body), or None."""
    session.receive_data(frame.marshal(commands.Basic.Get(queue=queue, no_ack=True), 1), now)
    replies = split_frames(session.data_to_send())
    if isinstance(replies[0], commands.Basic.GetEmpty):
        return None
    content = next(r for r in replies if isinstance(r, header.ContentHeader))
    payload = b"".join(r.value for r in replies if isinstance(r, body.ContentBody))
    return content.properties, payload


def _deaths(properties: Any) -> list[tuple[str, str, int]]:
    return [(d["queue"], d["reason"], d["count"]) for d in properties.headers["x-death"]]


def _queue(broker: Broker, name: str) -> Queue:
    return broker.namespace().queues.get(name)


def _expiring_into(target: str, ttl_ms: int = 10, exchange: str = "") -> dict[str, Any]:
    arguments: dict[str, Any] = {"x-message-ttl": ttl_ms, "x-dead-letter-exchange": exchange}
    if exchange == "":
        arguments["x-dead-letter-routing-key"] = target
    return arguments


def test_two_queues_expiring_into_each_other_stop_after_one_lap() -> None:
    broker = Broker()
    session = _open(broker, hold=False)
    _declare(session, "a", **_expiring_into("b"))
    _declare(session, "b", **_expiring_into("a"))
    _send(session, b"ping-pong", routing_key="a")
    now = NOW
    for _ in range(200):  # 100 TTLs of each queue: the old code bounced all along
        now += 0.01
        broker.on_time(now)
    a, b = _queue(broker, "a").statistics(), _queue(broker, "b").statistics()
    assert (a.published, a.expired, a.dead_lettered, a.dropped, a.ready) == (1, 1, 1, 0, 0)
    assert (b.published, b.expired, b.dead_lettered, b.dropped, b.ready) == (1, 1, 0, 1, 0)
    assert broker.next_deadline() is None


def test_the_cycle_rule_reads_its_memory_back_from_the_queue_between_hops() -> None:
    """The letter waiting in b carries its path; its next death is the one cut."""
    broker = Broker()
    session = _open(broker, hold=False)
    _declare(session, "a", **_expiring_into("b"))
    _declare(session, "b", **_expiring_into("a", ttl_ms=1000))
    _send(session, b"m", routing_key="a")
    broker.on_time(NOW + 0.015)
    [inside] = _queue(broker, "b").inspect(10).ready
    assert inside.headers is not None and inside.headers["x-death-path"] == "a"
    got = _get(session, "b", NOW + 0.02)
    assert got is not None
    properties, payload = got
    assert payload == b"m"
    assert "x-death-path" not in properties.headers  # the core's, not the client's
    assert _deaths(properties) == [("a", "expired", 1)]


def test_a_queue_expiring_into_itself_drops_at_the_first_expiry() -> None:
    broker = Broker()
    session = _open(broker, hold=False)
    _declare(session, "loop", **_expiring_into("loop"))
    _send(session, b"m", routing_key="loop")
    now = NOW
    for _ in range(100):
        now += 0.01
        broker.on_time(now)
    stats = _queue(broker, "loop").statistics()
    assert (stats.published, stats.expired, stats.dead_lettered, stats.dropped) == (1, 1, 0, 1)


def test_a_zero_queue_ttl_that_dead_letters_to_itself_drops_at_once() -> None:
    """All within one publish: it was the core's 8-hop limit that ended it."""
    broker = Broker()
    session = _open(broker, hold=False)
    _declare(session, "loop", **_expiring_into("loop", ttl_ms=0))
    _send(session, b"m", routing_key="loop")
    assert session.closing is None
    stats = _queue(broker, "loop").statistics()
    assert (stats.published, stats.expired, stats.dead_lettered, stats.dropped) == (1, 1, 0, 1)


def test_a_fanout_dead_letter_exchange_skips_only_the_queue_that_closes_the_cycle() -> None:
    broker = Broker()
    session = _open(broker, hold=False)
    session.receive_data(
        frame.marshal(commands.Exchange.Declare(exchange="dlx", exchange_type="fanout"), 1)
        + frame.marshal(commands.Queue.Declare(queue="audit"), 1),
        NOW,
    )
    _declare(session, "work", **_expiring_into("", exchange="dlx"))
    session.receive_data(
        frame.marshal(commands.Queue.Bind(queue="work", exchange="dlx"), 1)
        + frame.marshal(commands.Queue.Bind(queue="audit", exchange="dlx"), 1),
        NOW,
    )
    session.data_to_send()
    _send(session, b"m", routing_key="work")
    now = NOW
    for _ in range(100):
        now += 0.01
        broker.on_time(now)
    work, audit = _queue(broker, "work").statistics(), _queue(broker, "audit").statistics()
    assert (work.expired, work.dead_lettered, work.dropped, work.ready) == (1, 1, 0, 0)
    assert audit.published == 1
    got = _get(session, "audit", now)
    assert got is not None and _deaths(got[0]) == [("work", "expired", 1)]


def test_rejections_keep_delayed_retries_going_and_x_death_counts_them() -> None:
    """The retry pattern: rejected work waits in a TTL queue that dead-letters it back."""
    broker = Broker()
    session = _open(broker, hold=False)
    _declare(
        session, "work", **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "retry"}
    )
    _declare(session, "retry", **_expiring_into("work", ttl_ms=5000))
    _send(session, b"job", routing_key="work")
    now = NOW
    for attempt in range(1, 6):
        session.receive_data(frame.marshal(commands.Basic.Get(queue="work"), 1), now)
        replies = split_frames(session.data_to_send())
        [get_ok] = [r for r in replies if isinstance(r, commands.Basic.GetOk)]
        session.receive_data(
            frame.marshal(commands.Basic.Reject(get_ok.delivery_tag, requeue=False), 1), now
        )
        now += 5
        broker.on_time(now)
        session.receive_data(frame.marshal(commands.Basic.Get(queue="work"), 1), now)
        replies = split_frames(session.data_to_send())
        [content] = [r for r in replies if isinstance(r, header.ContentHeader)]
        [get_ok] = [r for r in replies if isinstance(r, commands.Basic.GetOk)]
        # One entry per (queue, reason), the latest first, counted as RabbitMQ counts.
        assert _deaths(content.properties) == [
            ("retry", "expired", attempt),
            ("work", "rejected", attempt),
        ]
        assert content.properties.headers["x-first-death-reason"] == "rejected"
        session.receive_data(
            frame.marshal(commands.Basic.Nack(get_ok.delivery_tag, requeue=True), 1), now
        )
    assert _queue(broker, "work").statistics().dropped == 0
    assert _queue(broker, "retry").statistics().dropped == 0


def test_a_republished_dead_letter_keeps_its_history_from_x_death() -> None:
    """RabbitMQ reads the cycle from x-death, whoever wrote it: a client that
    republishes a dead letter with its headers gives it no extra lap."""
    broker = Broker()
    session = _open(broker, hold=False)
    _declare(session, "dead")
    _declare(session, "a", **_expiring_into("dead"))
    _declare(session, "b", **_expiring_into("a"))
    _send(session, b"m", routing_key="a")
    broker.on_time(NOW + 0.015)
    got = _get(session, "dead", NOW + 0.015)
    assert got is not None
    properties, payload = got
    assert _deaths(properties) == [("a", "expired", 1)]
    _send(session, payload, routing_key="b", properties=properties, now=NOW + 0.015)
    broker.on_time(NOW + 0.03)  # expires in b; a is on its path: dropped
    a, b = _queue(broker, "a").statistics(), _queue(broker, "b").statistics()
    assert (a.published, b.expired, b.dropped) == (1, 1, 1)


def test_a_dead_letter_loses_its_expiration_and_x_death_keeps_it() -> None:
    broker = Broker()
    session = _open(broker, hold=False)
    _declare(session, "dead")
    _declare(session, "src", **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
    _send(
        session,
        b"m",
        routing_key="src",
        properties=commands.Basic.Properties(expiration="60000"),
    )
    session.receive_data(frame.marshal(commands.Basic.Get(queue="src"), 1), NOW)
    [get_ok] = [
        r for r in split_frames(session.data_to_send()) if isinstance(r, commands.Basic.GetOk)
    ]
    session.receive_data(
        frame.marshal(commands.Basic.Reject(get_ok.delivery_tag, requeue=False), 1), NOW
    )
    got = _get(session, "dead", NOW)
    assert got is not None
    properties, _ = got
    assert properties.expiration is None
    [death] = properties.headers["x-death"]
    assert death["original-expiration"] == "60000"
    assert sorted(death) == [
        "count",
        "exchange",
        "original-expiration",
        "queue",
        "reason",
        "routing-keys",
        "time",
    ]
    assert (death["exchange"], death["routing-keys"]) == ("", ["src"])
