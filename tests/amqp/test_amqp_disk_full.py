"""A full disk under publishers without confirms: blocked until there is room, nothing lost.

RabbitMQ never lets its disk fill: its disk alarm blocks publishing
connections first (Connection.Blocked to clients that advertised the
capability, and it stops reading from them). minibroker does the same when a
write is refused for want of room: the publish waits, the connection is read
no further, and the publish is tried again each second; when it goes
through, the connection is unblocked and the messages sent meanwhile follow,
in order (minibroker/amqp/connection.py::AmqpSession.wait_for_room). Before,
the channel was closed (406): pika raised at its next call, but kombu, which
does not read while it publishes, kept publishing into the closed channel,
whose frames are dropped: every later message was lost without a word.

The disk is filled through the storage layer's seam (``fileio.pwrite``
refuses with ENOSPC), under a real server in a thread; the test waits for
the refusal (an event), frees the disk, and waits for the messages.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest
from amqp_wire import publish_frames, split_frames
from pamqp import commands, frame

from minibroker.amqp.connection import LOW_ON_DISK, ROOM_RETRY, AmqpSession, AmqpSettings
from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig
from minibroker.server.datadir import DataDirectory
from minibroker.storage import fileio
from minibroker.testing import ThreadedBroker, run_in_thread

QUEUE = "jobs"
BODIES = [b"m%d" % i for i in range(5)]
#: Bounds every wait (retries come each ROOM_RETRY, 1 s): reached only by a
#: broken broker, never a pace (CI's machine runs at load 8 and more).
DEADLINE = 30.0


class Disk:
    """``full``: every log and journal write fails with ENOSPC; ``refused`` is set then."""

    def __init__(self) -> None:
        self.full = False
        self.refused = threading.Event()
        self._real = os.pwrite

    def pwrite(self, fd: int, data: bytes | memoryview, position: int) -> int:
        if self.full:
            self.refused.set()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._real(fd, data, position)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    seam = Disk()
    monkeypatch.setattr(fileio, "pwrite", seam.pwrite)
    return seam


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadedBroker]:
    with run_in_thread(amqp_port=0, data_dir=tmp_path) as threaded:
        yield threaded


def _declare_and_count(url: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = connection.channel()
        return int(ch.queue_declare(QUEUE, durable=True).method.message_count)
    finally:
        connection.close()


def _drain(url: str) -> list[bytes]:
    """Every message of the queue, once all of them have come (bounded)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    got: list[bytes] = []
    try:
        ch = connection.channel()
        deadline = time.monotonic() + DEADLINE
        while len(got) < len(BODIES) and time.monotonic() < deadline:
            method, _, body = ch.basic_get(QUEUE, auto_ack=True)
            if method is None:
                connection.process_data_events(0.05)
            else:
                got.append(body)
    finally:
        connection.close()
    return got


def _pika(url: str, disk: Disk) -> list[str]:
    told: list[str] = []
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.add_on_connection_blocked_callback(
        lambda _conn, frame: told.append(frame.method.reason)
    )
    connection.add_on_connection_unblocked_callback(lambda _conn, _frame: told.append("unblocked"))
    ch = connection.channel()
    disk.full = True
    for body in BODIES:
        ch.basic_publish("", QUEUE, body, pika.BasicProperties(delivery_mode=2))
    assert disk.refused.wait(DEADLINE)
    deadline = time.monotonic() + DEADLINE
    while not told and time.monotonic() < deadline:
        connection.process_data_events(0.05)
    assert _declare_and_count(url) == 0  # held, not lost, not stored
    disk.full = False
    while "unblocked" not in told and time.monotonic() < deadline:
        connection.process_data_events(0.05)
    assert ch.is_open  # not closed with 406 any more
    connection.close()
    return told


def _kombu(url: str, disk: Disk) -> list[str]:
    import kombu

    with kombu.Connection(url.replace("amqp://", "pyamqp://")) as connection:
        producer = connection.Producer()
        disk.full = True
        for body in BODIES:
            producer.publish(body, routing_key=QUEUE, delivery_mode=2)
        assert disk.refused.wait(DEADLINE)
        assert _declare_and_count(url) == 0
        disk.full = False
        return []  # kombu does not advertise connection.blocked: it is not told


def _aio_pika(url: str, disk: Disk) -> list[str]:
    import aio_pika

    async def run() -> None:
        connection = await aio_pika.connect(url)
        channel = await connection.channel(publisher_confirms=False)
        disk.full = True
        for body in BODIES:
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), QUEUE
            )
        assert await asyncio.to_thread(disk.refused.wait, DEADLINE)
        assert await asyncio.to_thread(_declare_and_count, url) == 0
        disk.full = False
        deadline = time.monotonic() + DEADLINE
        while await asyncio.to_thread(_count, url) < len(BODIES):
            assert time.monotonic() < deadline, "the held messages never came"
            await asyncio.sleep(0.05)
        assert not channel.is_closed
        await connection.close()

    asyncio.run(run())
    return []


def _count(url: str) -> int:
    return _declare_and_count(url)


CLIENTS: dict[str, Callable[[str, Disk], list[str]]] = {
    "pika": _pika,
    "kombu": _kombu,
    "aio-pika": _aio_pika,
}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_publisher_without_confirms_waits_for_room_and_loses_nothing(
    client: str, disk: Disk, server: ThreadedBroker
) -> None:
    url = server.amqp_url
    assert _declare_and_count(url) == 0
    told = CLIENTS[client](url, disk)
    assert _drain(url) == BODIES
    if client == "pika":  # pika advertises connection.blocked and is told
        assert told == [LOW_ON_DISK, "unblocked"]


def test_a_publisher_with_confirms_is_still_nacked(disk: Disk, server: ThreadedBroker) -> None:
    """Confirms tell the publisher which message the disk refused: it decides."""
    url = server.amqp_url
    _declare_and_count(url)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    ch = connection.channel()
    ch.confirm_delivery()
    disk.full = True
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", QUEUE, b"refused", pika.BasicProperties(delivery_mode=2))
    disk.full = False
    ch.basic_publish("", QUEUE, b"taken", pika.BasicProperties(delivery_mode=2))
    connection.close()
    assert _declare_and_count(url) == 1


# ------------------------------------------------ the session, without a socket


def _broker(root: Path) -> Broker:
    """A broker on a data directory; fsync "never", so no answer waits for a
    group commit (which the shell, absent here, would run)."""
    return Broker(CoreConfig(fsync="never"), storage=DataDirectory(root))


def _open(
    broker: Broker, *, capable: bool, settings: AmqpSettings | None = None, conn_id: int = 1
) -> AmqpSession:
    """An open session with channel 1 and a durable queue ``jobs``; sessions
    of one server share ``settings`` (and with them the full disk's state)."""
    if settings is None:
        settings = AmqpSettings(authenticate=lambda token: object())
    session = AmqpSession(broker, conn_id, settings)
    session.receive_data(b"AMQP\x00\x00\x09\x01", 0.0)
    [start] = split_frames(session.data_to_send())
    assert start.server_properties["capabilities"]["connection.blocked"] is True  # a disk to fill
    properties = {"capabilities": {"connection.blocked": True}} if capable else {}
    session.receive_data(
        frame.marshal(commands.Connection.StartOk(properties, "PLAIN", "\0u\0p"), 0)
        + frame.marshal(commands.Connection.TuneOk(2047, 131072, 0), 0)
        + frame.marshal(commands.Connection.Open("/"), 0)
        + frame.marshal(commands.Channel.Open(), 1)
        + frame.marshal(commands.Queue.Declare(queue=QUEUE, durable=True), 1),
        0.0,
    )
    session.data_to_send()
    return session


@pytest.mark.parametrize("capable", [True, False])
def test_the_refused_publish_is_retried_on_the_core_timers_and_the_rest_waits(
    disk: Disk, tmp_path: Path, capable: bool
) -> None:
    broker = _broker(tmp_path)
    session = _open(broker, capable=capable)
    queue = broker.namespace().queues.get(QUEUE)
    disk.full = True
    passive = frame.marshal(commands.Queue.Declare(queue=QUEUE, passive=True), 1)
    session.receive_data(
        publish_frames(b"one", routing_key=QUEUE)
        + publish_frames(b"two", routing_key=QUEUE)
        + passive,
        0.0,
    )
    told = split_frames(session.data_to_send())
    expected = [commands.Connection.Blocked] if capable else []
    assert [type(each) for each in told] == expected  # no Channel.Close, no DeclareOk
    assert session.input_blocked and queue.ready_count == 0
    broker.on_time(ROOM_RETRY - 0.01)
    session.resume_input(ROOM_RETRY - 0.01)  # the shell would not, while blocked: nothing moves
    assert session.data_to_send() == b"" and session.input_blocked
    broker.on_time(ROOM_RETRY)  # still full: held again
    assert session.input_blocked and queue.ready_count == 0
    disk.full = False
    broker.on_time(2 * ROOM_RETRY)
    assert not session.input_blocked and queue.ready_count == 1
    session.resume_input(2 * ROOM_RETRY)  # the rest of the input, in order
    *unblocked, declare_ok = split_frames(session.data_to_send())
    assert [type(each) for each in unblocked] == (
        [commands.Connection.Unblocked] if capable else []
    )
    assert isinstance(declare_ok, commands.Queue.DeclareOk) and declare_ok.message_count == 2
    assert [m.body for m in queue.inspect(10).ready] == [b"one", b"two"]


def test_a_connection_lost_while_waiting_for_room_drops_the_retry(
    disk: Disk, tmp_path: Path
) -> None:
    broker = _broker(tmp_path)
    session = _open(broker, capable=True)
    disk.full = True
    session.receive_data(publish_frames(b"one", routing_key=QUEUE), 0.0)
    assert session.input_blocked
    session.connection_lost(0.5)
    disk.full = False
    broker.on_time(ROOM_RETRY)
    assert broker.namespace().queues.get(QUEUE).ready_count == 0


class FillingDisk(Disk):
    """A disk with room for ``room`` more writes, full after them."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def pwrite(self, fd: int, data: bytes | memoryview, position: int) -> int:
        if self.room <= 0:
            self.full = True
        self.room -= 1
        return super().pwrite(fd, data, position)


def test_a_commit_the_disk_fills_under_waits_and_commits_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The disk fills after the first of a commit's publishes: the commit is
    not left half done (406 with "one" stored, as before) but held as a
    publish is, and finished when there is room: every publish, in order,
    then the settlements, then Tx.CommitOk."""
    broker = _broker(tmp_path)
    session = _open(broker, capable=True)
    queue = broker.namespace().queues.get(QUEUE)
    session.receive_data(publish_frames(b"delivered", routing_key=QUEUE), 0.0)
    session.receive_data(
        frame.marshal(commands.Basic.Get(queue=QUEUE), 1) + frame.marshal(commands.Tx.Select(), 1),
        0.0,
    )
    session.data_to_send()
    disk = FillingDisk(room=1)
    monkeypatch.setattr(fileio, "pwrite", disk.pwrite)
    passive = frame.marshal(commands.Queue.Declare(queue=QUEUE, passive=True), 1)
    session.receive_data(
        publish_frames(b"one", routing_key=QUEUE)
        + publish_frames(b"two", routing_key=QUEUE)
        + publish_frames(b"three", routing_key=QUEUE)
        + frame.marshal(commands.Basic.Ack(1), 1)
        + frame.marshal(commands.Tx.Commit(), 1)
        + passive,
        0.0,
    )
    told = split_frames(session.data_to_send())
    assert [type(each) for each in told] == [commands.Connection.Blocked]  # no Channel.Close
    assert session.input_blocked
    assert [m.body for m in queue.inspect(10).ready] == [b"one"]  # "two" waits, and "three"
    broker.on_time(ROOM_RETRY)  # still full: held again
    assert session.input_blocked and queue.ready_count == 1
    disk.full, disk.room = False, 100
    broker.on_time(2 * ROOM_RETRY)
    assert not session.input_blocked
    assert [m.body for m in queue.inspect(10).ready] == [b"one", b"two", b"three"]
    assert queue.inspect(10).in_flight == []  # the ack was applied with the commit
    session.resume_input(2 * ROOM_RETRY)
    answers = [type(each) for each in split_frames(session.data_to_send())]
    assert answers == [
        commands.Tx.CommitOk,  # written by the retry that finished the commit
        commands.Connection.Unblocked,
        commands.Queue.DeclareOk,
    ]


def test_a_commit_on_a_connection_lost_while_it_waits_gives_its_deliveries_back(
    disk: Disk, tmp_path: Path
) -> None:
    broker = _broker(tmp_path)
    session = _open(broker, capable=True)
    queue = broker.namespace().queues.get(QUEUE)
    session.receive_data(publish_frames(b"delivered", routing_key=QUEUE), 0.0)
    session.receive_data(
        frame.marshal(commands.Basic.Get(queue=QUEUE), 1) + frame.marshal(commands.Tx.Select(), 1),
        0.0,
    )
    session.data_to_send()
    disk.full = True
    session.receive_data(
        publish_frames(b"one", routing_key=QUEUE)
        + frame.marshal(commands.Basic.Ack(1), 1)
        + frame.marshal(commands.Tx.Commit(), 1),
        0.0,
    )
    assert session.input_blocked
    session.connection_lost(0.5)
    disk.full = False
    broker.on_time(ROOM_RETRY)
    # The commit never finished: its ack was not applied, the delivery is back.
    assert [m.body for m in queue.inspect(10).ready] == [b"delivered"]


@pytest.mark.parametrize("confirming", [False, True])
def test_while_a_publish_waits_for_room_every_publisher_waits_before_routing(
    disk: Disk, tmp_path: Path, confirming: bool
) -> None:
    """RabbitMQ's disk alarm blocks every publishing connection before its
    message is routed. Here: once one connection's publish waits for room,
    another's next publish waits too, unrouted, even one to a queue that
    needs no disk or one in confirm mode (no Basic.Nack), until the waiting
    publish went through."""
    broker = _broker(tmp_path)
    settings = AmqpSettings(authenticate=lambda token: object())
    first = _open(broker, capable=True, settings=settings, conn_id=1)
    other = _open(broker, capable=True, settings=settings, conn_id=2)
    other.receive_data(frame.marshal(commands.Queue.Declare(queue="transient"), 1), 0.0)
    if confirming:
        other.receive_data(frame.marshal(commands.Confirm.Select(), 1), 0.0)
    other.data_to_send()
    namespace = broker.namespace()
    disk.full = True
    first.receive_data(publish_frames(b"one", routing_key=QUEUE), 0.0)
    assert first.input_blocked
    other.receive_data(
        publish_frames(b"t", routing_key="transient") + publish_frames(b"two", routing_key=QUEUE),
        0.0,
    )
    told = [type(each) for each in split_frames(other.data_to_send())]
    assert told == [commands.Connection.Blocked]  # no Basic.Nack
    assert other.input_blocked
    assert namespace.queues.get("transient").ready_count == 0  # not routed
    disk.full = False
    broker.on_time(ROOM_RETRY)
    assert not first.input_blocked and not other.input_blocked
    other.resume_input(ROOM_RETRY)
    answers = [type(each) for each in split_frames(other.data_to_send())]
    acks = [commands.Basic.Ack] if confirming else []  # one, for both (multiple)
    assert answers == [commands.Connection.Unblocked, *acks]
    assert [m.body for m in namespace.queues.get(QUEUE).inspect(10).ready] == [b"one", b"two"]
    assert namespace.queues.get("transient").ready_count == 1


def test_the_others_are_read_again_when_the_waiting_connection_is_lost(
    disk: Disk, tmp_path: Path
) -> None:
    broker = _broker(tmp_path)
    settings = AmqpSettings(authenticate=lambda token: object())
    first = _open(broker, capable=True, settings=settings, conn_id=1)
    other = _open(broker, capable=False, settings=settings, conn_id=2)
    disk.full = True
    first.receive_data(publish_frames(b"one", routing_key=QUEUE), 0.0)
    other.receive_data(publish_frames(b"two", routing_key=QUEUE), 0.0)
    assert other.input_blocked
    first.connection_lost(0.5)
    assert not other.input_blocked  # it finds out about the disk for itself
    disk.full = False
    other.resume_input(0.5)
    assert [m.body for m in broker.namespace().queues.get(QUEUE).inspect(10).ready] == [b"two"]
