"""MemorySettler: a full collection and a heap trim at the first idle moment
after the RSS grew, never while frames come in (server/memory_settle.py)."""

from __future__ import annotations

import gc
import struct
import weakref

import trio
from raw_wire import StartServer

from minibroker.server.memory_settle import MemorySettler, collect_and_trim, resident_bytes

MiB = 1024 * 1024


class Fake:
    def __init__(self) -> None:
        self.frames = 0
        self.rss = 32 * MiB
        self.settles = 0
        #: False while the memory is in use: a settle then gives nothing back.
        self.freed = True

    def settle(self) -> None:
        self.settles += 1
        if self.freed:
            self.rss = 33 * MiB

    def settler(self) -> MemorySettler:
        return MemorySettler(
            lambda: self.frames, rss=lambda: self.rss, settle=self.settle, slack=8 * MiB
        )


def test_settles_once_idle_after_growth_and_never_while_busy() -> None:
    fake = Fake()
    settler = fake.settler()
    assert not settler.tick()  # idle, but nothing grew
    fake.rss = 90 * MiB
    for _ in range(3):
        fake.frames += 100  # a burst: frames keep coming in
        assert not settler.tick()
    assert settler.tick()  # the first idle interval after it
    assert fake.settles == 1 and fake.rss == 33 * MiB
    assert not settler.tick()  # back at the floor: nothing more to do
    fake.frames += 1
    fake.rss = 40 * MiB  # below floor + slack
    assert not settler.tick()
    fake.rss = 42 * MiB
    assert settler.tick()
    assert fake.settles == 2 and settler.settled == 2


def test_nothing_happened_since_the_last_settle_so_it_does_not_repeat() -> None:
    fake = Fake()
    settler = fake.settler()
    fake.frames += 1
    fake.rss = 90 * MiB
    fake.freed = False
    assert not settler.tick()  # the burst's interval
    assert settler.tick()  # idle after it: settles, but the memory is in use
    for _ in range(10):
        assert not settler.tick()  # no frame since: the same memory, no new attempt
    assert fake.settles == 1


def test_memory_held_during_a_settle_is_given_back_once_it_is_freed() -> None:
    """A settle while a backlog is held must not become the reference: when the
    backlog is later consumed and deleted, the next idle moment settles again."""
    fake = Fake()
    settler = fake.settler()
    fake.frames += 1
    fake.rss = 90 * MiB  # a backlog of 58 MiB sits in a queue, the server goes idle
    fake.freed = False
    assert not settler.tick()  # busy
    assert settler.tick() and fake.rss == 90 * MiB  # nothing to give back yet
    fake.frames += 1  # a consumer takes the backlog and the queue is deleted
    fake.freed = True
    assert not settler.tick()  # busy
    assert not settler.tick()  # the first idle moment after it is skipped (backoff)
    assert settler.tick()  # then the freed memory goes back
    assert fake.rss == 33 * MiB and fake.settles == 2


def test_a_fruitless_settle_waits_longer_each_time() -> None:
    fake = Fake()
    settler = fake.settler()
    fake.freed = False
    fake.rss = 200 * MiB  # in use for good (a big log), the server pinged now and then
    gaps = []
    idle_ticks = 0
    for _ in range(40):
        fake.frames += 1  # a ping
        assert not settler.tick()  # the interval of the ping is busy
        idle_ticks += 1
        if settler.tick():
            gaps.append(idle_ticks)
            idle_ticks = 0
    assert gaps[:5] == [1, 2, 3, 5, 9]  # each attempt skips twice as many idle moments
    assert fake.settles == len(gaps)


def test_without_a_reading_of_the_rss_it_never_settles() -> None:
    fake = Fake()
    settler = MemorySettler(lambda: 0, rss=lambda: None, settle=fake.settle)
    assert not settler.tick()
    assert fake.settles == 0


def test_the_real_settle_empties_garbage_and_the_rss_is_read() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    gc.disable()
    try:
        garbage = weakref.ref(Cycle())
        assert garbage() is not None
        collect_and_trim()
        assert garbage() is None
    finally:
        gc.enable()
    rss = resident_bytes()
    assert rss is not None and rss > MiB


async def test_input_on_any_front_end_keeps_the_server_busy(start_server: StartServer) -> None:
    """Kafka (and AMQP) requests are not msgpack frames: the settler's sign of
    activity is the server's chunks of input on every port, so a Kafka burst
    does not look idle and pay a full collection every second."""
    server = await start_server(kafka_port=0)
    before = server.input_chunks, server.stats.frames_in
    stream = await trio.open_tcp_stream("127.0.0.1", server.front_end_ports["kafka"])
    async with stream:
        # ApiVersions v0, correlation id 1, null client id
        await stream.send_all(struct.pack(">ihhih", 10, 18, 0, 1, -1))
        answer = await stream.receive_some(4096)
    assert answer
    assert server.stats.frames_in == before[1]  # no msgpack frame came in
    assert server.input_chunks > before[0]
