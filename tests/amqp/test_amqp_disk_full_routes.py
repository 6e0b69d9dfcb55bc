"""A full disk under a publish routed to several queues: each queue gets it exactly once.

RabbitMQ's disk alarm blocks publishers before their messages are routed,
so a message is never stored in some of its queues and not in others.
minibroker finds the disk full while routing (a durable queue's journal
write is refused), after queues earlier in the route may have taken the
message: a transient queue (no disk needed), or a durable queue written
before the disk filled. The held publish is then retried into the queues
that refused it only (``minibroker/amqp/channel.py``), so none gets it twice
(before, the whole message was routed again), and later publishes of the
connection wait behind it, so every queue keeps the publisher's order.

With confirms, a message some queue took is held the same way and acked
once every queue has it (a nack would make the publisher send it again, and
the queues that took it would get it twice); one that no queue took is
nacked at once, as before. Every connection that publishes to the full disk
waits on its own; the others are read as usual.

The sessions run without a socket (as the session tests of
test_amqp_disk_full.py), on the core's timers.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

import pika
import pytest
from amqp_wire import split_frames
from pamqp import body, commands, frame, header

from minibroker.amqp.connection import ROOM_RETRY, AmqpSession, AmqpSettings
from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig
from minibroker.server.datadir import DataDirectory
from minibroker.storage import fileio
from minibroker.testing import run_in_thread

TRANSIENT = "transient"
DURABLE = "durable"
OTHER = "durable-2"


class Disk:
    """Refuses every write with ENOSPC once ``room`` writes went through (None: room enough)."""

    def __init__(self) -> None:
        self.room: int | None = None
        self.refusals = 0
        self._real = os.pwrite

    def pwrite(self, fd: int, data: bytes | memoryview, position: int) -> int:
        if self.room is not None:
            if self.room <= 0:
                self.refusals += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= 1
        return self._real(fd, data, position)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    seam = Disk()
    monkeypatch.setattr(fileio, "pwrite", seam.pwrite)
    return seam


def _publish(exchange: str, key: str, payload: bytes) -> bytes:
    return (
        frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=key), 1)
        + frame.marshal(
            header.ContentHeader(0, len(payload), commands.Basic.Properties(delivery_mode=2)), 1
        )
        + frame.marshal(body.ContentBody(payload), 1)
    )


def _session(broker: Broker, conn_id: int, *, confirms: bool = False) -> AmqpSession:
    """An open session with channel 1 (in confirm mode if ``confirms``)."""
    session = AmqpSession(broker, conn_id, AmqpSettings(authenticate=lambda token: object()))
    session.receive_data(b"AMQP\x00\x00\x09\x01", 0.0)
    capable = {"capabilities": {"connection.blocked": True}}
    methods: list[Any] = [
        commands.Connection.StartOk(capable, "PLAIN", "\0u\0p"),
        commands.Connection.TuneOk(2047, 131072, 0),
        commands.Connection.Open("/"),
    ]
    data = b"".join(frame.marshal(m, 0) for m in methods)
    data += frame.marshal(commands.Channel.Open(), 1)
    if confirms:
        data += frame.marshal(commands.Confirm.Select(), 1)
    session.receive_data(data, 0.0)
    session.data_to_send()
    return session


def _declare(session: AmqpSession, kind: str, queues: list[tuple[str, bool]], key: str) -> None:
    """Exchange ``ex`` of ``kind`` and ``queues`` (name, durable) bound to it, in that order."""
    data = frame.marshal(commands.Exchange.Declare(exchange="ex", exchange_type=kind), 1)
    for name, durable in queues:
        data += frame.marshal(commands.Queue.Declare(queue=name, durable=durable), 1)
        data += frame.marshal(commands.Queue.Bind(queue=name, exchange="ex", routing_key=key), 1)
    session.receive_data(data, 0.0)
    answers = split_frames(session.data_to_send())
    assert not any(isinstance(a, commands.Channel.Close) for a in answers), answers


def _broker(root: Path) -> Broker:
    return Broker(CoreConfig(fsync="never"), storage=DataDirectory(root))


def _bodies(broker: Broker, name: str) -> list[bytes]:
    return [m.body for m in broker.namespace().queues.get(name).inspect(100).ready]


@pytest.mark.parametrize(("kind", "key"), [("fanout", ""), ("topic", "jobs.#"), ("direct", "k")])
def test_a_queue_that_took_the_message_does_not_get_it_again(
    disk: Disk, tmp_path: Path, kind: str, key: str
) -> None:
    broker = _broker(tmp_path)
    session = _session(broker, 1)
    _declare(session, kind, [(TRANSIENT, False), (DURABLE, True)], key)
    routing_key = "jobs.a" if kind == "topic" else key
    disk.room = 0
    session.receive_data(
        _publish("ex", routing_key, b"one") + _publish("ex", routing_key, b"two"), 0.0
    )
    assert disk.refusals and session.input_blocked
    # The transient queue took "one"; "two" waits behind it, unread.
    assert _bodies(broker, TRANSIENT) == [b"one"] and _bodies(broker, DURABLE) == []
    broker.on_time(ROOM_RETRY)  # still full: held again, nothing more stored
    assert _bodies(broker, TRANSIENT) == [b"one"] and _bodies(broker, DURABLE) == []
    disk.room = None
    broker.on_time(2 * ROOM_RETRY)
    assert not session.input_blocked
    session.resume_input(2 * ROOM_RETRY)
    assert _bodies(broker, TRANSIENT) == [b"one", b"two"]
    assert _bodies(broker, DURABLE) == [b"one", b"two"]


def test_a_durable_queue_written_before_the_disk_filled_does_not_get_it_again(
    disk: Disk, tmp_path: Path
) -> None:
    broker = _broker(tmp_path)
    session = _session(broker, 1)
    _declare(session, "fanout", [(DURABLE, True), (OTHER, True)], "")
    disk.room = 1  # the first queue's journal write, then full
    session.receive_data(_publish("ex", "", b"one"), 0.0)
    assert session.input_blocked
    assert _bodies(broker, DURABLE) == [b"one"] and _bodies(broker, OTHER) == []
    disk.room = None
    broker.on_time(ROOM_RETRY)
    assert not session.input_blocked
    assert _bodies(broker, DURABLE) == [b"one"] and _bodies(broker, OTHER) == [b"one"]


def test_a_confirm_for_a_partly_stored_message_is_held_then_acked(
    disk: Disk, tmp_path: Path
) -> None:
    """Never an ack before every queue has it, and no nack that would make
    the publisher send it again to the queue that took it."""
    broker = _broker(tmp_path)
    session = _session(broker, 1, confirms=True)
    _declare(session, "fanout", [(TRANSIENT, False), (DURABLE, True)], "")
    disk.room = 0
    session.receive_data(_publish("ex", "", b"one") + _publish("ex", "", b"two"), 0.0)
    told = split_frames(session.data_to_send())
    assert [type(t) for t in told] == [commands.Connection.Blocked]  # no Ack, no Nack
    disk.room = None
    broker.on_time(ROOM_RETRY)
    session.resume_input(ROOM_RETRY)
    told = split_frames(session.data_to_send())
    assert [type(t) for t in told] == [
        commands.Basic.Ack,  # one, once both queues have it
        commands.Connection.Unblocked,
        commands.Basic.Ack,  # two, read only then
    ]
    assert [t.delivery_tag for t in told if isinstance(t, commands.Basic.Ack)] == [1, 2]
    assert _bodies(broker, TRANSIENT) == [b"one", b"two"]
    assert _bodies(broker, DURABLE) == [b"one", b"two"]


def test_a_confirm_for_a_message_no_queue_took_is_nacked_at_once(
    disk: Disk, tmp_path: Path
) -> None:
    broker = _broker(tmp_path)
    session = _session(broker, 1, confirms=True)
    _declare(session, "fanout", [(DURABLE, True), (OTHER, True)], "")
    disk.room = 0
    session.receive_data(_publish("ex", "", b"one"), 0.0)
    [nack] = split_frames(session.data_to_send())
    assert isinstance(nack, commands.Basic.Nack) and nack.delivery_tag == 1
    assert not session.input_blocked
    assert _bodies(broker, DURABLE) == [] and _bodies(broker, OTHER) == []


def test_every_connection_publishing_to_the_full_disk_waits_and_loses_nothing(
    disk: Disk, tmp_path: Path
) -> None:
    broker = _broker(tmp_path)
    first, second, reader = (_session(broker, n) for n in (1, 2, 3))
    _declare(first, "fanout", [(TRANSIENT, False), (DURABLE, True)], "")
    disk.room = 0
    first.receive_data(_publish("ex", "", b"a1") + _publish("ex", "", b"a2"), 0.0)
    second.receive_data(_publish("ex", "", b"b1") + _publish("ex", "", b"b2"), 0.0)
    assert first.input_blocked and second.input_blocked
    # A connection that does not publish is read as usual.
    reader.receive_data(frame.marshal(commands.Queue.Declare(queue=DURABLE, passive=True), 1), 0.0)
    [declare_ok] = split_frames(reader.data_to_send())
    assert isinstance(declare_ok, commands.Queue.DeclareOk) and not reader.input_blocked
    disk.room = None
    broker.on_time(ROOM_RETRY)
    for session in (first, second):
        assert not session.input_blocked
        session.resume_input(ROOM_RETRY)
    for name in (TRANSIENT, DURABLE):
        stored = _bodies(broker, name)
        assert sorted(stored) == [b"a1", b"a2", b"b1", b"b2"], name
        assert stored.index(b"a1") < stored.index(b"a2") and stored.index(b"b1") < stored.index(
            b"b2"
        )


def test_pika_through_a_fanout_exchange_leaves_each_queue_one_copy(
    disk: Disk, tmp_path: Path
) -> None:
    """The same through a real server and client (pika, without confirms)."""
    bodies = [b"p%d" % i for i in range(3)]
    with run_in_thread(amqp_port=0, data_dir=tmp_path) as server:
        connection = pika.BlockingConnection(pika.URLParameters(server.amqp_url))
        try:
            ch = connection.channel()
            ch.exchange_declare("ex", "fanout")
            for name, durable in ((TRANSIENT, False), (DURABLE, True)):
                ch.queue_declare(name, durable=durable)
                ch.queue_bind(name, "ex")
            disk.room = 0
            for payload in bodies:
                ch.basic_publish("ex", "", payload, pika.BasicProperties(delivery_mode=2))
            deadline = time.monotonic() + 30  # a bound (load 8+), never a pace
            while not disk.refusals and time.monotonic() < deadline:
                connection.process_data_events(0.05)
            assert disk.refusals
            disk.room = None
            counts: dict[str, int] = {}
            while time.monotonic() < deadline:
                counts = {
                    name: ch.queue_declare(name, passive=True).method.message_count
                    for name in (TRANSIENT, DURABLE)
                }
                if counts[DURABLE] == len(bodies):
                    break
                connection.process_data_events(0.05)
            assert counts == {TRANSIENT: len(bodies), DURABLE: len(bodies)}
        finally:
            connection.close()
