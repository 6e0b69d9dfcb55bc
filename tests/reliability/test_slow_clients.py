"""Clients that are slow, silent, numerous or never read, against a live server.

* slowloris: a hello sent one byte at a time is cut off by the hello
  timeout; a frame trickled in after hello ties up only its own connection;
* a connection storm of 1,000 connections is served, and the broker's
  memory comes back down to a bounded level;
* a subscriber that never reads loses its oldest messages, not the
  publisher's speed or anyone else's messages;
* a client that pipelines requests with big answers and never reads them
  makes the server stop reading it, instead of buffering gigabytes.

Memory is the server process's resident set (/proc/PID/status).
"""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from reliability_support import WireClient, hello_frame

import minibroker
from benchmarks.broker_process import BrokerProcess
from minibroker.config import ServerConfig
from minibroker.protocol.codec import RawFrameDecoder, pack_frame
from minibroker.server.app import BrokerServer

pytestmark = pytest.mark.slow

HELLO_TIMEOUT = 2.0
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    data_dir = tmp_path_factory.mktemp("slow") / "data"
    process = BrokerProcess.start(data_dir, "--hello-timeout", str(HELLO_TIMEOUT))
    try:
        yield process
    finally:
        process.stop()


def ping_round_trips(url: str, count: int) -> int:
    with minibroker.connect_sync(url) as mb:
        for i in range(count):
            assert mb.ping(b"%d" % i) == b"%d" % i
    return count


# ------------------------------------------------------------------- slowloris


def test_a_hello_trickled_byte_by_byte_is_cut_off(server: BrokerProcess) -> None:
    """The hello timeout counts from the connection, not from the last byte."""
    hello = pack_frame(hello_frame())
    client = WireClient(server.port)
    started = time.monotonic()
    sent = 0
    stop = threading.Event()

    def trickle() -> None:
        nonlocal sent
        try:
            # One byte every 0.4 s: the whole hello would take ~15 s.
            for byte in hello:
                if stop.wait(0.4):
                    return
                client.send_bytes(bytes([byte]))
                sent += 1
        except OSError:
            return  # the server closed us: expected

    trickler = threading.Thread(target=trickle)
    trickler.start()
    try:
        # Meanwhile the broker serves everyone else as usual.
        assert ping_round_trips(server.url, 200) == 200
        frames = client.until_eof()
    finally:
        stop.set()
        trickler.join()
        client.close()
    elapsed = time.monotonic() - started
    assert sent < len(hello)
    assert frames == [
        {"op": "bye", "code": "timeout", "message": frames[0]["message"]}
    ], frames
    assert "no hello within 2 seconds" in frames[0]["message"]
    assert HELLO_TIMEOUT <= elapsed < HELLO_TIMEOUT + 5


def test_a_frame_trickled_after_hello_ties_up_only_its_connection(server: BrokerProcess) -> None:
    client = WireClient(server.port)
    client.hello()
    frame = pack_frame({"op": "ping", "id": 2, "data": b"slow"})
    try:
        for index, byte in enumerate(frame):
            client.send_bytes(bytes([byte]))
            if index % 4 == 0:
                # Between the slow client's bytes, a normal client does a round trip.
                assert ping_round_trips(server.url, 1) == 1
        assert client.response(2)["result"] == b"slow"
    finally:
        client.close()


async def test_hello_timeout_in_process(autojump_clock: trio.testing.MockClock) -> None:
    """The same rule without a subprocess, on Trio's mock clock: silent connections
    are closed at the deadline, authenticated ones are left alone."""
    server = BrokerServer(ServerConfig(port=0, hello_timeout=10.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            url = f"minibroker://127.0.0.1:{server.port}"
            async with minibroker.connect(url) as talker:
                silent = await trio.open_tcp_stream("127.0.0.1", server.port)  # type: ignore[arg-type]
                started = trio.current_time()
                decoder = RawFrameDecoder()
                while chunk := await silent.receive_some(4096):
                    decoder.receive_data(chunk)
                assert [f["code"] for f in decoder.values()] == ["timeout"]
                assert trio.current_time() - started >= 10.0
                await silent.aclose()
                await trio.sleep(60)
                assert await talker.ping(b"still here") == b"still here"
        finally:
            server.shutdown()


# --------------------------------------------------------------------- storm


def test_a_storm_of_1000_connections(server: BrokerProcess) -> None:
    count = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1000), hard))
    rss_before = server.rss_bytes()
    sockets: list[socket.socket] = []
    try:
        hello = pack_frame(hello_frame())
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(hello)
            sockets.append(sock)
        # While all of them are open, everyone gets an answer, and so do others.
        for sock in sockets:
            decoder = RawFrameDecoder()
            while not (answers := list(decoder.values())):
                data = sock.recv(65536)
                assert data, "connection closed during the storm"
                decoder.receive_data(data)
            assert answers[0]["op"] == "ok", answers
        assert ping_round_trips(server.url, 10) == 10
        peak = server.rss_bytes()
    finally:
        for sock in sockets:
            sock.close()
    cost = peak - rss_before
    assert cost < 200 * MiB, f"1000 idle connections cost {cost >> 20} MiB"
    assert ping_round_trips(server.url, 10) == 10
    assert server.alive()


# ----------------------------------------------------------- never reading


def test_a_subscriber_that_never_reads(server: BrokerProcess) -> None:
    """It overflows its own bounded buffer; the publisher and a reading subscriber
    carry on as if it were not there, and the server's memory stays bounded."""
    url = f"{server.url}?namespace=never-reads"
    lazy = WireClient(server.port)
    lazy.hello(namespace="never-reads")
    lazy.send({"op": "subscribe", "id": 2, "pattern": "feed.#", "buffer": 1000})
    assert lazy.response(2)["op"] == "ok"
    rss_before = server.rss_bytes()
    body = b"x" * 1024
    batches, per_batch = 400, 250  # 100 MB published in all

    received = 0

    async def read_all(sub: object) -> None:
        nonlocal received
        async for _ in sub:  # type: ignore[attr-defined]
            received += 1
            if received == batches * per_batch:
                return

    async def run() -> None:
        with trio.fail_after(120):
            async with (
                minibroker.connect(url) as reader,
                minibroker.connect(url) as publisher,
                reader.subscribe("feed.#", buffer=100_000) as sub,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(read_all, sub)
                for _ in range(batches):
                    result = await publisher.publish_many("feed.data", [body] * per_batch)
                    assert result.subscriptions == 2 * per_batch

    trio.run(run)
    assert received == batches * per_batch
    growth = server.rss_bytes() - rss_before
    lazy.close()
    assert growth < 200 * MiB, f"server RSS grew by {growth >> 20} MiB"
    assert ping_round_trips(server.url, 5) == 5


def test_pipelined_big_answers_that_are_never_read(server: BrokerProcess) -> None:
    """2,000 pipelined reads of up to 4 MB each (8 GB of answers) from a client that
    reads nothing: the server answers up to its outbound high-water mark, then
    stops reading that client. (It used to answer a whole 64 KiB chunk of
    requests at once: 1.6 GB of memory from 130 KB sent.)"""
    url = f"{server.url}?namespace=pipeline"
    with minibroker.connect_sync(url) as mb:
        mb.create_log("big")
        for _ in range(40):
            mb.append_many("big", [b"y" * 100_000])
    rss_before = server.rss_bytes()
    greedy = WireClient(server.port)
    greedy.hello(namespace="pipeline")
    requests = b"".join(
        pack_frame({"op": "read", "id": i, "log": "big", "max_bytes": 4_000_000})
        for i in range(2, 2002)
    )
    greedy.sock.settimeout(2.0)
    with contextlib.suppress(TimeoutError):  # the server stopped reading us: the point
        greedy.sock.sendall(requests)
    assert ping_round_trips(server.url, 5) == 5
    growth = server.rss_bytes() - rss_before
    greedy.close()
    assert growth < 200 * MiB, f"server RSS grew by {growth >> 20} MiB"
    assert server.alive()
    assert ping_round_trips(server.url, 5) == 5


def test_a_client_that_vanishes_mid_frame(server: BrokerProcess, tmp_path: Path) -> None:
    for size in (1, 3, 4, 100, 70_000):
        client = WireClient(server.port)
        client.hello()
        client.send_bytes(pack_frame({"op": "ping", "id": 2, "data": b"z" * 80_000})[:size])
        client.close()
    assert ping_round_trips(server.url, 5) == 5
