"""Fuzz a real ``minibroker serve`` with a million generated frames while a healthy client pings.

Not a test (it runs for minutes): the long version of
``tests/protocol/test_session_fuzz.py``. Several fuzzing connections send
pipelined frames drawn from a seeded generator:

* requests of every op with their real field names and values of random
  types and sizes (wrong types, huge and negative numbers, NaN, junk
  strings, nested containers, unknown and missing ops, non-string keys);
* well-formed requests on a small pool of queues, topics and logs, so the
  handlers do real work (and the state stays bounded);
* now and then, frames that end the connection: values that are not maps,
  bytes that are not msgpack, length prefixes over the limit, an array
  longer than any request may hold, junk or a big length prefix before
  hello, and a frame cut off by closing the connection;
* rarely, a nested bomb within every bound (arrays of empty maps that a
  handler then refuses): the known cost of decoding msgpack to Python
  objects, measured in the healthy client's latency.

Meanwhile a healthy client pings every 10 ms. The run records crashes (the
server exited), hangs (a ping unanswered for 10 s, or a fuzzing connection
that got no EOF within 10 s of a frame that must end it), ``internal``
errors, the healthy client's latency, and the server's RSS at start, at its
peak, 2 s after every queue and log left is deleted at the end, and once the
server has settled its memory (server/memory_settle.py logs it).

    python -m benchmarks.frame_fuzz                     # 1,000,000 frames
    python -m benchmarks.frame_fuzz --frames 20000 --json fuzz.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import random
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import trio

import minibroker
from benchmarks.broker_process import BrokerProcess
from minibroker.protocol.codec import RawFrameDecoder, pack_frame
from minibroker.protocol.frame_class import fields
from minibroker.protocol.frames import PROTOCOL_VERSION, REQUESTS

HANG_SECONDS = 10.0
#: What ``minibroker serve`` logs when it gives a burst's memory back.
SETTLED = "settled memory after a burst"
PING_INTERVAL = 0.01
QUEUES = [f"fz{i}" for i in range(4)]
LOGS = [f"fzl{i}" for i in range(4)]
HELLO = pack_frame({"op": "hello", "id": 0, "version": PROTOCOL_VERSION, "client": "fuzz"})
MiB = 1024 * 1024


@dataclass
class FuzzReport:
    frames: int = 0
    connections: int = 0
    #: Frames sent, by kind.
    kinds: dict[str, int] = field(default_factory=dict)
    #: Frames received by the fuzzers, by op and error code.
    answers: dict[str, int] = field(default_factory=dict)
    internal_errors: int = 0
    crashed: bool = False
    hangs: int = 0
    pings: int = 0
    ping_p50_ms: float = 0.0
    ping_p99_ms: float = 0.0
    ping_max_ms: float = 0.0
    rss_start_mib: float = 0.0
    rss_peak_mib: float = 0.0
    rss_end_mib: float = 0.0
    #: RSS once the server settled its memory after the round (None: it did not within 30 s).
    rss_settled_mib: float | None = None
    seconds: float = 0.0
    server_tracebacks: int = 0


class FrameGenerator:
    """Seeded frames, each with whether it must end its connection."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._fields = {
            op: [f.name for f in fields(cls) if f.name != "id"]
            for op, cls in REQUESTS.items()
            if op != "hello"
        }
        self._ops = sorted(self._fields)
        self._next_id = 1

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def scalar(self) -> Any:
        rng = self.rng
        kind = rng.randrange(10)
        if kind == 0:
            return None
        if kind == 1:
            return rng.choice([True, False])
        if kind == 2:
            return rng.choice([0, -1, 1, 2**31, 2**63 - 1, -(2**63), 2**64 - 1, rng.randrange(100)])
        if kind == 3:
            return rng.choice([0.0, -1.5, 1e-300, 5e-324, 1e300, math.nan, math.inf, -math.inf])
        if kind == 4:
            return rng.choice(QUEUES + LOGS + ["", "a..b", "x" * 300, "ü.*", "#", "fz.t"])
        if kind == 5:
            return rng.randbytes(rng.randrange(64))
        if kind == 6:
            return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(12)))
        if kind == 7:
            return rng.choice(["earliest", "latest", "drop_oldest", "disconnect", "reject_new"])
        return rng.randrange(-5, 1000)

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        kind = rng.randrange(6 if depth < 3 else 1)
        if kind <= 2:
            return self.scalar()
        if kind == 3:
            return [self.value(depth + 1) for _ in range(rng.randrange(5))]
        if kind == 4:
            return [{"body": self.scalar(), "headers": self.value(depth + 1)}]
        keys = [self.scalar() for _ in range(rng.randrange(4))]
        return {k: self.value(depth + 1) for k in keys if isinstance(k, str | int | bytes)}

    def junk_request(self) -> bytes:
        rng = self.rng
        op = rng.choice(self._ops)
        frame: dict[Any, Any] = {
            "op": op,
            "id": self._id() if rng.random() < 0.9 else self.scalar(),
        }
        for name in self._fields[op]:
            if rng.random() < 0.6:
                frame[name] = self.value()
        if rng.random() < 0.05:
            frame[self.scalar() if rng.random() < 0.5 else "extra"] = self.value()
        return pack_frame(frame)

    def valid_request(self) -> bytes:
        rng = self.rng
        queue, log = rng.choice(QUEUES), rng.choice(LOGS)
        body = rng.randbytes(rng.randrange(200))
        request: dict[str, Any] = rng.choice(
            [
                {"op": "ping", "data": body},
                {"op": "queue.declare", "queue": queue, "max_length": 1000},
                {"op": "put", "queue": queue, "messages": [{"body": body}]},
                {"op": "fetch", "queue": queue, "max_messages": 5},
                {"op": "publish", "topic": f"fz.{queue}", "messages": [{"body": body}]},
                {"op": "subscribe", "pattern": "fz.*", "buffer_bytes": 64 * 1024},
                {"op": "log.create", "log": log, "retention_bytes": 1 * MiB},
                {"op": "append", "log": log, "records": [{"body": body}]},
                {"op": "read", "log": log, "start": "earliest", "max_records": 5},
            ]
        )
        return pack_frame({**request, "id": self._id()})

    def connection_ender(self) -> tuple[str, bytes]:
        rng = self.rng
        kind = rng.choice(["not_a_map", "garbage", "oversized", "container_bomb", "cut_off"])
        if kind == "not_a_map":
            return kind, pack_frame(self.value(2))
        if kind == "garbage":
            body = b"\xc1" + rng.randbytes(rng.randrange(100))
            return kind, struct.pack(">I", len(body)) + body
        if kind == "oversized":
            return kind, struct.pack(">I", rng.randrange(16 * MiB + 1, 2**32))
        if kind == "container_bomb":
            count = 200_001
            body = b"\x81\xa1x\xdd" + struct.pack(">I", count) + b"\x80" * count
            return kind, struct.pack(">I", len(body)) + body
        frame = self.valid_request()
        return kind, frame[: rng.randrange(1, len(frame))]

    def pre_hello_junk(self) -> tuple[str, bytes]:
        rng = self.rng
        if rng.random() < 0.5:
            return "pre_hello_big_prefix", struct.pack(">I", rng.randrange(64 * 1024 + 1, 2**31))
        return "pre_hello_junk", self.junk_request()

    def nested_bomb(self) -> bytes:
        inner = b"\xdc" + struct.pack(">H", 50_000) + b"\x80" * 50_000
        body = b"\x83\xa2op\xa4ping\xa2id\x01\xa4data\xdc" + struct.pack(">H", 20) + inner * 20
        return struct.pack(">I", len(body)) + body


class Fuzzer:
    def __init__(
        self,
        server: BrokerProcess,
        frames: int,
        seed: int,
        workers: int,
        idle_mib: float | None = None,
    ) -> None:
        self.server = server
        #: The server's RSS before the first round (default: at this round's start).
        self.idle_mib = idle_mib
        self.frames = frames
        self.seed = seed
        self.workers = workers
        self.report = FuzzReport()
        self.latencies: list[float] = []
        self.done = False

    def _count(self, table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n

    async def run(self) -> FuzzReport:
        report = self.report
        started = time.perf_counter()
        seen = len(self.server.log)
        async with minibroker.connect(self.server.url) as healthy:
            await healthy.ping()
            report.rss_start_mib = self.server.rss_bytes() / MiB
            report.rss_peak_mib = report.rss_start_mib
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._ping, healthy)
                nursery.start_soon(self._sample_rss)
                async with trio.open_nursery() as fuzzers:
                    share = self.frames // self.workers
                    for index in range(self.workers):
                        fuzzers.start_soon(self._fuzz, index, share)
                self.done = True
            # What the requests legitimately stored: the pool's queues and logs,
            # and those the generated requests happened to create with valid
            # odd names (a junk ``log.create`` of a random unicode name makes a log).
            for info in await healthy.list_queues():
                with contextlib.suppress(minibroker.NotFound):
                    await healthy.delete_queue(info.queue)
            for log in await healthy.list_logs():
                with contextlib.suppress(minibroker.NotFound):
                    await healthy.delete_log(log)
        report.seconds = time.perf_counter() - started
        await trio.sleep(2)
        report.crashed = not self.server.alive()
        report.rss_end_mib = self.server.rss_bytes() / MiB
        report.server_tracebacks = len(self.server.lines_matching("Traceback"))
        report.rss_settled_mib = await trio.to_thread.run_sync(self._settled_rss, seen)
        if self.latencies:
            ordered = sorted(self.latencies)
            report.pings = len(ordered)
            report.ping_p50_ms = statistics.median(ordered) * 1000
            report.ping_p99_ms = ordered[int(len(ordered) * 0.99)] * 1000
            report.ping_max_ms = ordered[-1] * 1000
        return report

    def _settled_rss(self, seen: int) -> float | None:
        """RSS after the first settle that finds the memory back near where it
        started (a settle may also come in a pause of the round)."""
        target = (self.idle_mib or self.report.rss_start_mib) * 1.10
        while (rss := self.server.rss_bytes() / MiB) > target:
            try:
                seen = self.server.wait_for_line(SETTLED, after=seen) + 1
            except TimeoutError:
                return None
        return rss

    async def _ping(self, healthy: Any) -> None:
        while not self.done:
            begun = time.perf_counter()
            with trio.move_on_after(HANG_SECONDS) as scope:
                await healthy.ping()
            if scope.cancelled_caught:
                self.report.hangs += 1
            self.latencies.append(time.perf_counter() - begun)
            await trio.sleep(PING_INTERVAL)

    async def _sample_rss(self) -> None:
        while not self.done:
            self.report.rss_peak_mib = max(self.report.rss_peak_mib, self.server.rss_bytes() / MiB)
            await trio.sleep(0.5)

    async def _fuzz(self, index: int, quota: int) -> None:
        generator = FrameGenerator(self.seed * 1000 + index)
        rng = generator.rng
        sent = 0
        while sent < quota:
            if not self.server.alive():
                self.report.crashed = True
                return
            stream = await trio.open_tcp_stream("127.0.0.1", self.server.port)
            self.report.connections += 1
            batch: list[bytes] = []
            ender: str | None = None
            if rng.random() < 0.02:
                ender, frame = generator.pre_hello_junk()
                batch.append(frame)
            else:
                batch.append(HELLO)  # not counted: it opens the connection
                # About one connection-ending frame per 500 frames.
                while sent + len(batch) - 1 < quota and ender is None:
                    draw = rng.random()
                    if draw < 0.002:
                        ender, frame = generator.connection_ender()
                    elif draw < 0.00202:
                        self._count(self.report.kinds, "nested_bomb")
                        frame = generator.nested_bomb()
                    elif draw < 0.40:
                        self._count(self.report.kinds, "valid")
                        frame = generator.valid_request()
                    else:
                        self._count(self.report.kinds, "junk_request")
                        frame = generator.junk_request()
                    batch.append(frame)
            if ender is not None:
                self._count(self.report.kinds, ender)
            sent += len(batch) - (batch[0] is HELLO)
            await self._converse(stream, batch, ender)
        self.report.frames += sent

    async def _converse(
        self, stream: trio.SocketStream, batch: list[bytes], ender: str | None
    ) -> None:
        """Send the batch pipelined and then EOF, reading every answer until the server closes."""
        decoder = RawFrameDecoder(64 * MiB)

        async def send() -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                for start in range(0, len(batch), 64):
                    await stream.send_all(b"".join(batch[start : start + 64]))
                await stream.send_eof()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                with trio.move_on_after(HANG_SECONDS) as scope:
                    while data := await stream.receive_some(1 << 16):
                        decoder.receive_data(data)
                        for frame in decoder.values():
                            key = f"{frame.get('op')}:{frame.get('code', '')}"
                            self._count(self.report.answers, key)
                            if frame.get("code") == "internal":
                                self.report.internal_errors += 1
                if scope.cancelled_caught:
                    self.report.hangs += 1
                    print(f"hang: no EOF within {HANG_SECONDS} s (ender {ender})", file=sys.stderr)
                nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the server reset the connection after a connection-ending frame
        finally:
            await trio.aclose_forcefully(stream)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.frame_fuzz", description=__doc__)
    parser.add_argument("--frames", type=int, default=1_000_000, help="frames per round")
    parser.add_argument("--workers", type=int, default=4, help="fuzzing connections at a time")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first round")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds against the same server: RSS that settles after each round is the "
        "allocator keeping its high-water mark, RSS that keeps growing would be a leak",
    )
    parser.add_argument("--json", help="also write the reports to this file")
    args = parser.parse_args(argv)
    reports = []
    with BrokerProcess.start() as server:
        for round_number in range(args.rounds):
            idle = reports[0].rss_start_mib if reports else None
            fuzzer = Fuzzer(server, args.frames, args.seed + round_number, args.workers, idle)
            report = trio.run(fuzzer.run)
            reports.append(report)
            print(f"--- round {round_number + 1}")
            for name, value in dataclasses.asdict(report).items():
                print(f"{name}: {value}")
            if report.crashed:
                break
    if args.json:
        with open(args.json, "w") as out:
            json.dump([dataclasses.asdict(report) for report in reports], out, indent=2)
    failed = any(r.crashed or r.hangs or r.internal_errors or r.server_tracebacks for r in reports)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
