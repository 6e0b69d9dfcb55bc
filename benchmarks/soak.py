"""Soak: N publishers and M consumers against a real ``minibroker serve`` for a while.

Not a test (it asserts nothing about speed): a long, steady load that shows
whether the broker's memory plateaus, how latency behaves over time, and
whether anything confirmed goes missing. Each publisher puts batches into a
queue at a fixed rate (or as fast as confirms allow with ``--rate 0``); each
consumer fetches, acks, and measures the end-to-end latency from the
timestamp in the body. A topic subscriber and a log appender ride along, so
every model's memory is exercised. The server's resident memory is sampled
every second.

At the end publishing stops, the consumers drain the queue, and every
confirmed message is checked with the crash campaign's ledger (lost,
unexpected, duplicated).

    python -m benchmarks.soak --seconds 600 --publishers 4 --consumers 4 --rate 2000
    python -m benchmarks.soak --seconds 60 --durable --json soak.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

import minibroker
from benchmarks.broker_process import BrokerProcess
from benchmarks.crash_campaign import IdLedger

QUEUE = "soak"
TOPIC = "soak.events"
LOG = "soak-log"
MiB = 1024 * 1024


@dataclass
class SoakReport:
    seconds: float
    publishers: int
    consumers: int
    durable: bool
    rate_per_publisher: int
    batch: int
    messages: dict[str, int] = field(default_factory=dict)
    confirm_ms: dict[str, float] = field(default_factory=dict)
    end_to_end_ms: dict[str, float] = field(default_factory=dict)
    #: (seconds since start, server RSS in MiB), one sample a second.
    rss_mib: list[tuple[float, float]] = field(default_factory=list)
    topic_messages_received: int = 0
    log_records_appended: int = 0

    @property
    def rss_verdict(self) -> str:
        """PLATEAU when the second half of the run grew by less than 5% (and 8 MiB)."""
        if len(self.rss_mib) < 4:
            return "too short to tell"
        half = len(self.rss_mib) // 2
        mid = max(rss for _, rss in self.rss_mib[:half])
        end = max(rss for _, rss in self.rss_mib[half:])
        growth = end - mid
        if growth < max(8.0, 0.05 * mid):
            return f"PLATEAU (second half +{growth:.1f} MiB)"
        return f"GROWING (second half +{growth:.1f} MiB)"

    def summary(self) -> str:
        rss = [r for _, r in self.rss_mib] or [0.0]
        lines = [
            f"soak: {self.seconds:.0f}s, {self.publishers} publishers x "
            f"{self.rate_per_publisher or 'max'} msg/s, {self.consumers} consumers, "
            f"batch {self.batch}, {'durable' if self.durable else 'memory'} queue",
            "  messages: " + ", ".join(f"{k}={v}" for k, v in self.messages.items()),
            "  confirm latency ms: " + _fmt(self.confirm_ms),
            "  end-to-end latency ms: " + _fmt(self.end_to_end_ms),
            f"  server RSS MiB: start {rss[0]:.1f}, max {max(rss):.1f}, end {rss[-1]:.1f}"
            f" -> {self.rss_verdict}",
            f"  topic messages received: {self.topic_messages_received}, "
            f"log records appended: {self.log_records_appended}",
            "  RESULT: "
            + (
                "OK"
                if self.messages.get("lost", 1) == 0 and self.messages.get("unexpected", 1) == 0
                else "LOSS"
            ),
        ]
        return "\n".join(lines)


def _fmt(stats: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.2f}" for k, v in stats.items()) or "n/a"


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": at(0.50),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


class Soak:
    def __init__(self, args: argparse.Namespace, server: BrokerProcess) -> None:
        self.args = args
        self.server = server
        self.ledger = IdLedger(QUEUE)
        self.confirm_ms: list[float] = []
        self.end_to_end_ms: list[float] = []
        self.rss: list[tuple[float, float]] = []
        self.topic_received = 0
        self.log_appended = 0
        self.publishing = True

    def body(self, message_id: int, rng: random.Random) -> bytes:
        # The ledger's body, with the send time (monotonic ns) in front of its padding.
        return self.ledger.body(message_id, rng) + b"@%d" % time.monotonic_ns()

    def observe(self, body: bytes) -> None:
        payload, _, sent = body.rpartition(b"@")
        self.ledger.observe(payload)
        if sent.isdigit():
            self.end_to_end_ms.append((time.monotonic_ns() - int(sent)) / 1e6)

    async def publisher(self, index: int) -> None:
        args = self.args
        rng = random.Random(index)
        interval = args.batch / args.rate if args.rate else 0.0
        next_at = trio.current_time()
        async with minibroker.connect(self.server.url) as mb:
            while self.publishing:
                ids = self.ledger.new_ids(args.batch)
                bodies = [self.body(i, rng) for i in ids]
                started = time.perf_counter()
                await mb.put_many(QUEUE, bodies)
                self.confirm_ms.append((time.perf_counter() - started) * 1000)
                self.ledger.confirm(ids)
                await mb.publish(TOPIC, b"e")
                if interval:
                    next_at += interval
                    await trio.sleep_until(next_at)

    async def consumer(self, done: trio.Event) -> None:
        async with minibroker.connect(self.server.url) as mb:
            while True:
                batch = await mb.fetch(QUEUE, max_messages=500, wait=0.5)
                for d in batch:
                    self.observe(d.body)
                if batch:
                    await mb.ack(batch)
                elif not self.publishing:
                    done.set()
                    return

    async def subscriber(self) -> None:
        async with minibroker.connect(self.server.url) as mb, mb.subscribe(
            "soak.#", buffer=10_000
        ) as sub:
            async for _ in sub:
                self.topic_received += 1

    async def appender(self) -> None:
        async with minibroker.connect(self.server.url) as mb:
            while self.publishing:
                await mb.append_many(LOG, [b"record"] * 100)
                self.log_appended += 100
                await trio.sleep(0.1)

    async def sample_memory(self, started: float) -> None:
        while True:
            self.rss.append((trio.current_time() - started, self.server.rss_bytes() / MiB))
            await trio.sleep(1.0)

    async def run(self) -> None:
        args = self.args
        async with minibroker.connect(self.server.url) as mb:
            await mb.declare_queue(QUEUE, durable=args.durable, visibility_timeout=300)
            await mb.create_log(LOG, retention_bytes=16 * MiB, segment_bytes=MiB)
        started = trio.current_time()
        async with trio.open_nursery() as background:
            background.start_soon(self.sample_memory, started)
            background.start_soon(self.subscriber)
            async with trio.open_nursery() as nursery:
                for index in range(args.publishers):
                    nursery.start_soon(self.publisher, index)
                nursery.start_soon(self.appender)
                drained = [trio.Event() for _ in range(args.consumers)]
                for done in drained:
                    nursery.start_soon(self.consumer, done)
                await trio.sleep(args.seconds)
                self.publishing = False
                with trio.move_on_after(120):
                    for done in drained:
                        await done.wait()
            background.cancel_scope.cancel()

    def report(self) -> SoakReport:
        args = self.args
        return SoakReport(
            seconds=args.seconds,
            publishers=args.publishers,
            consumers=args.consumers,
            durable=args.durable,
            rate_per_publisher=args.rate,
            batch=args.batch,
            messages=self.ledger.classify(),
            confirm_ms=_percentiles(self.confirm_ms),
            end_to_end_ms=_percentiles(self.end_to_end_ms),
            rss_mib=[(round(t, 1), round(r, 1)) for t, r in self.rss],
            topic_messages_received=self.topic_received,
            log_records_appended=self.log_appended,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to publish")
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument(
        "--rate", type=int, default=2000, help="messages/s per publisher (0: as fast as confirms)"
    )
    parser.add_argument("--batch", type=int, default=20, help="messages per put")
    parser.add_argument("--durable", action="store_true", help="durable queue on a data dir")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="soak-")) if args.durable else None
    server = BrokerProcess.start(data_dir)
    try:
        soak = Soak(args, server)
        trio.run(soak.run)
    finally:
        server.stop()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
    report = soak.report()
    print(report.summary())
    if args.json is not None:
        payload: dict[str, Any] = {**asdict(report), "rss_verdict": report.rss_verdict}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if report.messages.get("lost") == 0 and report.messages.get("unexpected") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
