"""connection.blocked / unblocked under a resource alarm (minibroker/amqp/blocking.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pika
from amqp_wire import publish_frames, split_frames
from pamqp import commands, frame

from minibroker.amqp.blocking import Blocking
from minibroker.amqp.connection import AmqpSession, AmqpSettings
from minibroker.config import ServerConfig
from minibroker.core.broker import Broker
from minibroker.server.resource_alarm import ResourceAlarm
from minibroker.testing import ThreadedBroker, run_in_thread


def _session(
    broker: Broker, conn_id: int, blocking: Blocking | None, *, capable: bool
) -> tuple[AmqpSession, Any]:
    session = AmqpSession(
        broker, conn_id, AmqpSettings(authenticate=lambda token: object(), blocking=blocking)
    )
    session.receive_data(b"AMQP\x00\x00\x09\x01")
    [start] = split_frames(session.data_to_send())
    properties = {"capabilities": {"connection.blocked": True}} if capable else {}
    session.receive_data(
        frame.marshal(commands.Connection.StartOk(properties, "PLAIN", "\0u\0p"), 0)
        + frame.marshal(commands.Connection.TuneOk(2047, 131072, 0), 0)
        + frame.marshal(commands.Connection.Open("/"), 0)
        + frame.marshal(commands.Channel.Open(), 1)
        + frame.marshal(commands.Queue.Declare(queue="q"), 1)
    )
    session.data_to_send()
    return session, start


def test_the_capability_is_advertised_only_with_an_alarm() -> None:
    _, plain = _session(Broker(), 1, None, capable=True)
    _, alarmed = _session(Broker(), 1, Blocking(), capable=True)
    assert "connection.blocked" not in plain.server_properties["capabilities"]
    assert alarmed.server_properties["capabilities"]["connection.blocked"] is True


def test_a_publisher_under_the_alarm_is_read_no_further_until_it_clears() -> None:
    broker = Broker()
    blocking = Blocking()
    publisher, _ = _session(broker, 1, blocking, capable=True)
    unaware, _ = _session(broker, 2, blocking, capable=False)
    queue = broker.namespace().queues.get("q")

    blocking.set("low on memory")
    [blocked] = split_frames(publisher.data_to_send())
    assert isinstance(blocked, commands.Connection.Blocked) and blocked.reason == "low on memory"
    assert unaware.data_to_send() == b""  # no capability: not told, blocked all the same

    publisher.receive_data(publish_frames(b"one") + publish_frames(b"two"))
    unaware.receive_data(publish_frames(b"three"))
    assert publisher.input_blocked and unaware.input_blocked
    assert queue.ready_count == 0  # each stopped after the Publish method frame

    blocking.set(None)
    [unblocked] = split_frames(publisher.data_to_send())
    assert isinstance(unblocked, commands.Connection.Unblocked)
    assert not publisher.input_blocked and not unaware.input_blocked
    publisher.resume_input()  # what the shell does once its reader may go on
    unaware.resume_input()
    assert queue.ready_count == 3


def test_a_connection_that_only_consumes_is_not_blocked() -> None:
    broker = Broker()
    blocking = Blocking()
    publisher, _ = _session(broker, 1, None, capable=False)
    publisher.receive_data(publish_frames(b"job"))
    consumer, _ = _session(broker, 2, blocking, capable=True)
    blocking.set("low on disk")
    consumer.data_to_send()
    consumer.receive_data(
        frame.marshal(commands.Basic.Get(queue="q"), 1)
        + frame.marshal(commands.Basic.Ack(1), 1)
        + frame.marshal(commands.Queue.Declare(queue="q", passive=True), 1)
    )
    assert not consumer.input_blocked
    *_, declare_ok = split_frames(consumer.data_to_send())
    assert isinstance(declare_ok, commands.Queue.DeclareOk) and declare_ok.message_count == 0


def test_a_client_that_connects_during_the_alarm_is_told_at_once() -> None:
    blocking = Blocking()
    blocking.set("low on memory")
    session = AmqpSession(
        Broker(), 1, AmqpSettings(authenticate=lambda token: object(), blocking=blocking)
    )
    session.receive_data(b"AMQP\x00\x00\x09\x01")
    session.data_to_send()
    session.receive_data(
        frame.marshal(
            commands.Connection.StartOk(
                {"capabilities": {"connection.blocked": True}}, "PLAIN", "\0u\0p"
            ),
            0,
        )
        + frame.marshal(commands.Connection.TuneOk(2047, 131072, 0), 0)
        + frame.marshal(commands.Connection.Open("/"), 0)
    )
    *_, open_ok, blocked = split_frames(session.data_to_send())
    assert isinstance(open_ok, commands.Connection.OpenOk)
    assert isinstance(blocked, commands.Connection.Blocked)


def test_the_alarm_follows_memory_and_disk_and_tells_its_listeners(tmp_path: Path) -> None:
    memory = [100]
    free = [1000]
    alarm = ResourceAlarm(
        memory_limit=200,
        disk_free_limit=500,
        data_dir=tmp_path,
        memory=lambda: memory[0],
        disk_free=lambda path: free[0],
    )
    heard: list[str | None] = []
    alarm.listeners.append(heard.append)
    assert alarm.check() is None and heard == []
    memory[0] = 300
    assert alarm.check() == "low on memory"
    free[0] = 10
    alarm.check()
    memory[0] = 100
    alarm.check()
    alarm.check()
    free[0] = 1000
    alarm.check()
    assert heard == ["low on memory", "low on memory and disk", "low on disk", None]
    assert not ResourceAlarm(disk_free_limit=5).enabled  # no data directory: nothing to watch


def _set_memory(broker: ThreadedBroker, resident: int) -> None:
    alarm = broker.server.resource_alarm

    def measure() -> None:
        alarm.memory = lambda: resident
        alarm.check()

    broker._run_in_loop(measure)


def test_pika_sees_blocked_and_unblocked_and_its_publishes_wait() -> None:
    config = ServerConfig(port=0, amqp_port=0, memory_high_watermark=2**40)
    with run_in_thread(config) as broker:
        params = pika.URLParameters(broker.amqp_url)
        publisher = pika.BlockingConnection(params)
        events: list[Any] = []
        publisher.add_on_connection_blocked_callback(
            lambda _, method: events.append(("blocked", method.method.reason))
        )
        publisher.add_on_connection_unblocked_callback(lambda _, m: events.append("unblocked"))
        ch = publisher.channel()
        ch.queue_declare("q")
        watcher = pika.BlockingConnection(params)
        other = watcher.channel()

        def ready() -> int:
            return int(other.queue_declare("q", passive=True).method.message_count)

        def until(condition: Any) -> None:
            for _ in range(200):  # at most ~10 s
                if condition():
                    return
                publisher.process_data_events(time_limit=0.05)
            raise AssertionError("timed out")

        _set_memory(broker, 2**41)
        until(lambda: events)
        assert events == [("blocked", "low on memory")]
        ch.basic_publish("", "q", b"held")
        ch.basic_publish("", "q", b"held too")
        sessions = broker.server.sessions
        until(
            lambda: broker._run_in_loop(
                lambda: any(getattr(s, "input_blocked", False) for s in sessions.values())
            )
        )
        assert ready() == 0  # the watcher, which only declares, is served
        _set_memory(broker, 2**20)
        until(lambda: len(events) == 2)
        assert events[1] == "unblocked"
        until(lambda: ready() == 2)
        watcher.close()
        publisher.close()
