"""MemorySettler: a full collection and a heap trim at the first idle moment
after the RSS grew, never during a burst of input, on any port; a trickle of
input is idle (server/memory_settle.py)."""

from __future__ import annotations

import gc
import struct
import weakref

import trio
from raw_wire import StartServer

from minibroker.server.memory_settle import MemorySettler, collect_and_trim, resident_bytes

MiB = 1024 * 1024
#: Input of one interval of a burst: far above what counts as idle.
BURST = 1 * MiB
#: Input of one interval of a trickle: two pings a second, say.
TRICKLE = 2 * 20


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
        fake.frames += BURST  # a burst: input keeps coming in
        assert not settler.tick()
    assert settler.tick()  # the first idle interval after it
    assert fake.settles == 1 and fake.rss == 33 * MiB
    assert not settler.tick()  # back at the floor: nothing more to do
    fake.frames += TRICKLE
    fake.rss = 39 * MiB  # below floor + slack
    assert not settler.tick()
    fake.rss = 42 * MiB
    assert settler.tick()
    assert fake.settles == 2 and settler.settled == 2


def test_nothing_happened_since_the_last_settle_so_it_does_not_repeat() -> None:
    fake = Fake()
    settler = fake.settler()
    fake.frames += BURST
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
    fake.frames += BURST
    fake.rss = 90 * MiB  # a backlog of 58 MiB sits in a queue, the server goes idle
    fake.freed = False
    assert not settler.tick()  # busy
    assert settler.tick() and fake.rss == 90 * MiB  # nothing to give back yet
    fake.frames += BURST  # a consumer takes the backlog and the queue is deleted
    fake.freed = True
    assert not settler.tick()  # busy
    assert not settler.tick()  # the first idle moment after it is skipped (backoff)
    assert settler.tick()  # then the freed memory goes back
    assert fake.rss == 33 * MiB and fake.settles == 2


def test_a_fruitless_settle_waits_longer_each_time() -> None:
    fake = Fake()
    settler = fake.settler()
    fake.freed = False
    fake.rss = 200 * MiB  # in use for good (a big log), a burst now and then
    gaps = []
    idle_ticks = 0
    for _ in range(40):
        fake.frames += BURST
        assert not settler.tick()  # the interval of the burst is busy
        idle_ticks += 1
        if settler.tick():
            gaps.append(idle_ticks)
            idle_ticks = 0
    assert gaps[:5] == [1, 2, 3, 5, 9]  # each attempt skips twice as many idle moments
    assert fake.settles == len(gaps)


def test_a_server_pinged_twice_a_second_settles_after_a_burst() -> None:
    """Any input used to count as activity, so a health check every 500 ms
    kept the server busy for good: it never gave a burst's memory back."""
    fake = Fake()
    settler = fake.settler()
    fake.frames += BURST
    fake.rss = 90 * MiB
    assert not settler.tick()  # the burst
    fake.frames += TRICKLE
    assert settler.tick()  # then only the pings: idle
    assert fake.settles == 1 and fake.rss == 33 * MiB
    for _ in range(20):
        fake.frames += TRICKLE
        assert not settler.tick()  # back at the floor: the pings cost no collection
    assert fake.settles == 1


def test_a_trickle_over_memory_in_use_does_not_settle_every_second() -> None:
    fake = Fake()
    settler = fake.settler()
    fake.freed = False
    fake.rss = 200 * MiB  # held for good, and pinged all along
    ticks = []
    for tick in range(40):
        fake.frames += TRICKLE
        if settler.tick():
            ticks.append(tick)
    assert ticks == [0, 2, 5, 10, 19, 36]  # each fruitless settle waits twice as long


def test_the_threshold_is_a_rate_per_interval() -> None:
    fake = Fake()
    settler = MemorySettler(
        lambda: fake.frames, rss=lambda: fake.rss, settle=fake.settle, slack=8 * MiB, idle_bytes=100
    )
    fake.rss = 90 * MiB
    fake.frames += 101
    assert not settler.tick()  # over the threshold: busy
    fake.frames += 100
    assert settler.tick()  # at it: idle


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
    """Kafka (and AMQP) requests are not msgpack frames: the settler's measure
    of activity is the server's bytes of input on every port, so a Kafka burst
    does not look idle and pay a full collection every second."""
    server = await start_server(kafka_port=0)
    before = server.input_received, server.stats.frames_in
    request = struct.pack(">ihhih", 10, 18, 0, 1, -1)  # ApiVersions v0, null client id
    stream = await trio.open_tcp_stream("127.0.0.1", server.front_end_ports["kafka"])
    async with stream:
        await stream.send_all(request)
        answer = await stream.receive_some(4096)
    assert answer
    assert server.stats.frames_in == before[1]  # no msgpack frame came in
    assert server.input_received - before[0] == len(request)


async def test_output_counts_too_so_a_replaying_consumer_keeps_the_server_busy(
    start_server: StartServer,
) -> None:
    """A Kafka replay is megabytes of Fetch answers to a few small requests.
    Counting input alone, the settler took such a server for an idle one and
    ran a full collection and a heap trim every second of the replay (a fifth
    of the broker's CPU in a py-spy profile): what it measures, the server's
    traffic, counts the bytes sent as well as those received."""
    server = await start_server(kafka_port=0)
    before = server.traffic, server.input_received
    request = struct.pack(">ihhih", 10, 18, 0, 1, -1)  # ApiVersions v0, null client id
    stream = await trio.open_tcp_stream("127.0.0.1", server.front_end_ports["kafka"])
    async with stream:
        await stream.send_all(request)
        answer = await stream.receive_some(4096)
    assert len(answer) > len(request)
    assert server.input_received - before[1] == len(request)
    assert server.traffic - before[0] == len(request) + len(answer)


async def _http_exchange(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = await stream.receive_some(4096)
            assert chunk
            answer += chunk
    return answer


async def test_sqs_and_http_input_count_too(start_server: StartServer) -> None:
    """Every byte an SQS or HTTP client sends counts, not only requests that
    reach a broker operation (a dashboard poll, a 404, a refused request)."""
    server = await start_server(sqs_port=0, http_port=0)
    assert server.http_port is not None
    request = b"GET /no/such/page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    before = server.input_received
    answer = await _http_exchange(server.http_port, request)
    assert answer.startswith(b"HTTP/1.1 404")
    assert server.input_received - before == len(request)
    before = server.input_received
    answer = await _http_exchange(server.front_end_ports["sqs"], request)
    assert answer.startswith(b"HTTP/1.1 ")
    assert server.input_received - before == len(request)
