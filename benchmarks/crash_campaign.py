"""Crash campaign: kill -9 a loaded ``minibroker serve --data-dir`` again and again.

Each cycle starts a real server process on the same data directory, puts it
under mixed load, and SIGKILLs it at a random moment (sometimes while it is
still recovering from the last kill). The load is every durable path at once:

* **queue**: producers ``put_many`` batches into the durable queue ``jobs``
  and wait for each confirm; consumers ``fetch`` and ``ack``;
* **topic**: a publisher ``publish_many``es to ``orders.<region>``, which a
  durable binding copies into the durable queue ``audit``; a consumer
  fetches and acks it. The binding is made once, in the first cycle, so a
  binding lost to a crash shows up as confirmed publishes that reached no
  queue;
* **log**: appenders ``append_many`` batches to the log ``events``; an
  auditor reads it with the consumer group ``auditor`` and commits as it
  goes;
* **request/reply**: responders answer ``svc.echo`` requests with the
  request's body; requesters send numbered requests and check that each
  reply is the answer to their own request (nothing is stored: this load
  keeps the event loop and the connections busy while the storage works).

A ledger (Jepsen's total-queue check) records every message id sent, every
id the broker confirmed, and every delivery seen. After the last cycle the
broker is restarted once more, both queues are drained and the whole log is
read, and every confirmed message is classified:

* **delivered**: seen by a consumer (or at the right offset, for the log);
* **lost**: confirmed but never seen, or not at its confirmed offset. Must be 0;
* **unexpected**: seen but never sent, or garbled. Must be 0;
* **duplicated**: seen more than once. Allowed (at least once), reported;
* **acks undone**: delivered again after its ack was confirmed. Must be 0;
* **unrouted**: a confirmed topic publish that reached no queue. Must be 0;
* **commits lost**: the group's committed offset went back. Must be 0;
* **partial batches**: a batch (one ``put_many``, ``publish_many`` or
  ``append_many``, confirmed or not) of which some messages were seen and
  others never were. Must be 0: after kill -9 a batch is there whole or not
  at all (docs/storage.md, "Segment files: batches");
* **wrong replies**: a reply that does not answer the request it came back
  for. Must be 0.

Run it on demand (``python -m benchmarks.crash_campaign --cycles 1000``); a
few cycles run in the test suite (tests/reliability/test_crash_campaign.py).
docs/reliability.md records the command and figures of the last long run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import sys
import tempfile
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

import minibroker
from benchmarks.broker_process import BrokerProcess
from minibroker.errors import (
    BrokerError,
    ConnectionClosed,
    NoResponders,
    ResponderGone,
    Timeout,
)

QUEUE = "jobs"
AUDIT_QUEUE = "audit"
BINDING = "orders.#"
REGIONS = ("eu", "us", "apac")
LOG = "events"
GROUP = "auditor"
#: Long enough that nothing is redelivered by timeout during a cycle:
#: redeliveries here come from crashes only.
VISIBILITY_TIMEOUT = 600.0
#: Small log segments, so cycles roll segments and recovery sees several.
LOG_SEGMENT_BYTES = 256 * 1024
SUBJECT = "svc.echo"

#: How long a restart may take before it counts as hung. Recovery replays the
#: journals, and on a machine shared with other work a start can take many
#: times its usual second or two: the 30 s default once cut a 176-cycle run short.
START_TIMEOUT = 300.0

#: Errors a client sees when the server dies under it: expected, not reported.
_GONE = (ConnectionClosed, OSError, trio.BrokenResourceError, trio.ClosedResourceError)


# ------------------------------------------------------------------ the ledger


class IdLedger:
    """Every message of one stream, by id: sent, confirmed, seen, acked.

    Bodies carry their id (``b"jobs|123|...."``), so a delivery is mapped
    back to its id without a lookup table; the flags live in byte arrays
    (one byte per message), so millions of messages cost megabytes.
    """

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self._prefix = tag.encode() + b"|"
        self.next_id = 0
        self.confirmed = bytearray()
        self.seen = bytearray()
        self.acked = bytearray()
        self.unexpected = 0
        self.unexpected_samples: list[bytes] = []
        self.acks_undone = 0
        #: First id of every batch, in order: a batch runs to the next one's first id.
        self.batch_starts: array[int] = array("q")
        self.partial_samples: list[str] = []

    def new_ids(self, count: int) -> range:
        """Reserve ``count`` fresh ids for one batch (they count as sent from now on)."""
        first = self.next_id
        self.batch_starts.append(first)
        self.next_id += count
        grow = self.next_id - len(self.confirmed)
        if grow > 0:
            zeros = bytes(grow)
            self.confirmed += zeros
            self.seen += zeros
            self.acked += zeros
        return range(first, self.next_id)

    def body(self, message_id: int, rng: random.Random) -> bytes:
        return b"%s%d|%s" % (self._prefix, message_id, b"." * rng.randrange(0, 64))

    def parse(self, body: bytes) -> int | None:
        """The id in ``body``, or None if it is not a body this ledger sent."""
        if not body.startswith(self._prefix):
            return None
        digits, bar, padding = body[len(self._prefix) :].partition(b"|")
        if not digits.isdigit() or not bar or padding.strip(b"."):
            return None
        message_id = int(digits)
        return message_id if message_id < self.next_id else None

    def observe(self, body: bytes) -> int | None:
        """A consumer received ``body``; returns its id (None: unexpected)."""
        message_id = self.parse(body)
        if message_id is None:
            self.unexpected += 1
            if len(self.unexpected_samples) < 5:
                self.unexpected_samples.append(body[:80])
            return None
        if self.acked[message_id]:
            self.acks_undone += 1
        if self.seen[message_id] < 255:
            self.seen[message_id] += 1
        return message_id

    def confirm(self, ids: range) -> None:
        self.confirmed[ids.start : ids.stop] = b"\x01" * len(ids)

    def ack(self, ids: list[int]) -> None:
        for message_id in ids:
            self.acked[message_id] = 1

    def classify(self) -> dict[str, int]:
        confirmed = delivered = lost = duplicates = 0
        for message_id in range(self.next_id):
            seen = self.seen[message_id]
            if seen > 1:
                duplicates += seen - 1
            if self.confirmed[message_id]:
                confirmed += 1
                if seen:
                    delivered += 1
                else:
                    lost += 1
        return {
            "sent": self.next_id,
            "confirmed": confirmed,
            "delivered": delivered,
            "lost": lost,
            "unexpected": self.unexpected,
            "duplicated": duplicates,
            "acks_undone": self.acks_undone,
            **self.batch_atomicity(self.seen),
        }

    def batch_atomicity(self, seen: bytearray) -> dict[str, int]:
        """Batches seen whole, not at all, or in part (``seen``: one byte per id, 0 = never).

        A batch the broker never confirmed may be there or not after a
        crash, but only as a whole: part of one is a torn batch.
        """
        whole = absent = partial = 0
        ends = [*self.batch_starts[1:], self.next_id]
        for start, end in zip(self.batch_starts, ends, strict=True):
            missing = seen[start:end].count(0)
            if missing == 0:
                whole += 1
            elif missing == end - start:
                absent += 1
            else:
                partial += 1
                if len(self.partial_samples) < 5:
                    self.partial_samples.append(f"ids {start}..{end - 1}: {missing} missing")
        return {"batches_whole": whole, "batches_absent": absent, "batches_partial": partial}


class LogLedger:
    """The log stream: ids sent, and the offset each confirmed id must be at."""

    def __init__(self) -> None:
        self.ids = IdLedger(LOG)
        #: offset -> id confirmed there (-1: nothing confirmed at that offset).
        self.at_offset: array[int] = array("q")
        self.last_commit = -1
        self.commits_lost = 0

    def confirm(self, first_offset: int, ids: range) -> None:
        self.ids.confirm(ids)
        end = first_offset + len(ids)
        if end > len(self.at_offset):
            self.at_offset.extend([-1] * (end - len(self.at_offset)))
        for i, message_id in enumerate(ids):
            self.at_offset[first_offset + i] = message_id

    def check_all(self, records: list[tuple[int, bytes]]) -> dict[str, int]:
        """Classify from a full read of the log: (offset, body) for every record."""
        ids = self.ids
        present: dict[int, int] = {}  # id -> offset where it was found
        found_at: dict[int, int] = {}  # offset -> id found there
        unexpected = duplicated = gaps = 0
        expected_offset = records[0][0] if records else 0
        for offset, body in records:
            if offset != expected_offset:
                gaps += 1
            expected_offset = offset + 1
            message_id = ids.parse(body)
            if message_id is None:
                unexpected += 1
                if len(ids.unexpected_samples) < 5:
                    ids.unexpected_samples.append(body[:80])
                continue
            if message_id in present:
                duplicated += 1
            present[message_id] = offset
            found_at[offset] = message_id
        found = bytearray(ids.next_id)
        for message_id in present:
            found[message_id] = 1
        confirmed = delivered = lost = 0
        for offset, message_id in enumerate(self.at_offset):
            if message_id < 0:
                continue
            confirmed += 1
            if found_at.get(offset) == message_id:
                delivered += 1
            else:
                lost += 1
        return {
            "sent": ids.next_id,
            "confirmed": confirmed,
            "delivered": delivered,
            "lost": lost,
            "unexpected": unexpected,
            "duplicated": duplicated,
            "offset_gaps": gaps,
            "commits_lost": self.commits_lost,
            **ids.batch_atomicity(found),
        }


@dataclass
class Report:
    cycles: int = 0
    #: Kills that hit the server before any load (during or right after recovery).
    early_kills: int = 0
    seed: int = 0
    fsync: str = "batch"
    seconds: float = 0.0
    queue: dict[str, int] = field(default_factory=dict)
    topic: dict[str, int] = field(default_factory=dict)
    log: dict[str, int] = field(default_factory=dict)
    #: Confirmed topic publishes (messages) that reached no queue.
    unrouted: int = 0
    #: Request/reply: requests sent, answered, and replies that answered another request.
    requests: dict[str, int] = field(default_factory=dict)
    #: Recovery log lines that reported cutting torn or corrupt data.
    recovery_cuts: int = 0
    #: Unexpected client errors (not "the server died"), first few.
    errors: list[str] = field(default_factory=list)
    samples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        bad = 0
        for stats in (self.queue, self.topic, self.log):
            bad += stats.get("lost", 0) + stats.get("unexpected", 0)
            bad += stats.get("acks_undone", 0) + stats.get("commits_lost", 0)
            bad += stats.get("offset_gaps", 0) + stats.get("batches_partial", 0)
        bad += self.requests.get("wrong_replies", 0)
        return bad == 0 and self.unrouted == 0 and not self.errors

    def confirmed(self) -> int:
        return sum(s.get("confirmed", 0) for s in (self.queue, self.topic, self.log))

    def summary(self) -> str:
        lines = [
            f"crash campaign: {self.cycles} cycles ({self.early_kills} killed while "
            f"recovering), fsync={self.fsync}, seed={self.seed}, {self.seconds:.1f}s",
            f"  confirmed messages: {self.confirmed()}",
        ]
        for name, stats in (("queue", self.queue), ("topic", self.topic), ("log", self.log)):
            lines.append(f"  {name:5}: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
        lines.append("  requests: " + ", ".join(f"{k}={v}" for k, v in self.requests.items()))
        lines.append(f"  unrouted topic publishes: {self.unrouted}")
        lines.append(f"  recovery log lines that cut data: {self.recovery_cuts}")
        if self.errors:
            lines.append(f"  unexpected client errors: {self.errors}")
        lines.append("  RESULT: " + ("OK" if self.ok else "FAILED"))
        return "\n".join(lines)


# ------------------------------------------------------------------ the load


class Campaign:
    def __init__(
        self,
        data_dir: Path,
        *,
        seed: int,
        max_load_seconds: float,
        fsync: str,
        early_kill_chance: float,
    ) -> None:
        self.data_dir = data_dir
        self.rng = random.Random(seed)
        self.max_load_seconds = max_load_seconds
        self.fsync = fsync
        self.early_kill_chance = early_kill_chance
        self.queue = IdLedger(QUEUE)
        self.topic = IdLedger(AUDIT_QUEUE)
        self.log = LogLedger()
        self.requests = {"sent": 0, "answered": 0, "wrong_replies": 0}
        self.report = Report(seed=seed, fsync=fsync, requests=self.requests)
        self.server: BrokerProcess | None = None

    def start_server(self) -> BrokerProcess:
        self.server = BrokerProcess.start(
            self.data_dir, "--fsync", self.fsync, start_timeout=START_TIMEOUT
        )
        return self.server

    def _note_server_log(self, server: BrokerProcess) -> None:
        self.report.recovery_cuts += len(server.lines_matching(r"cut \d+ bytes|is damaged"))

    def _error(self, where: str, exc: BaseException) -> None:
        if len(self.report.errors) < 10:
            self.report.errors.append(f"{where}: {type(exc).__name__}: {exc}")

    async def setup(self, url: str) -> None:
        async with minibroker.connect(url) as mb:
            for name in (QUEUE, AUDIT_QUEUE):
                await mb.declare_queue(name, durable=True, visibility_timeout=VISIBILITY_TIMEOUT)
            await mb.bind(AUDIT_QUEUE, BINDING)
            await mb.create_log(LOG, segment_bytes=LOG_SEGMENT_BYTES)

    async def check_after_restart(self, url: str) -> None:
        """What must hold at every restart: options kept, commit not gone back."""
        async with minibroker.connect(url) as mb:
            for name in (QUEUE, AUDIT_QUEUE):
                # Same options again: a no-op, or Conflict if they were lost.
                await mb.declare_queue(name, durable=True, visibility_timeout=VISIBILITY_TIMEOUT)
            committed = await mb.committed(LOG, GROUP)
            if self.log.last_commit >= 0 and (committed or 0) < self.log.last_commit:
                self.log.commits_lost += 1

    # -- workers: each runs until its connection dies with the server ------------

    async def _guard(self, name: str, worker: Callable[[Any], Awaitable[None]], url: str) -> None:
        try:
            async with minibroker.connect(url, client_name=name) as mb:
                await worker(mb)
        except* _GONE:
            pass
        except* BrokerError as group:
            for exc in group.exceptions:
                self._error(name, exc)

    async def queue_producer(self, mb: Any) -> None:
        rng = random.Random(self.rng.random())
        while True:
            ids = self.queue.new_ids(rng.randrange(1, 200))
            await mb.put_many(QUEUE, [self.queue.body(i, rng) for i in ids])
            self.queue.confirm(ids)

    async def _consume(self, mb: Any, queue: str, ledger: IdLedger) -> None:
        while True:
            batch = await mb.fetch(queue, max_messages=300, wait=0.2)
            if not batch:
                continue
            ids = [ledger.observe(d.body) for d in batch]
            await mb.ack(batch)
            ledger.ack([i for i in ids if i is not None])

    async def queue_consumer(self, mb: Any) -> None:
        await self._consume(mb, QUEUE, self.queue)

    async def topic_publisher(self, mb: Any) -> None:
        rng = random.Random(self.rng.random())
        while True:
            ids = self.topic.new_ids(rng.randrange(1, 100))
            topic = f"orders.{rng.choice(REGIONS)}"
            result = await mb.publish_many(topic, [self.topic.body(i, rng) for i in ids])
            self.topic.confirm(ids)
            if result.queues < len(ids):
                self.report.unrouted += len(ids) - result.queues

    async def audit_consumer(self, mb: Any) -> None:
        await self._consume(mb, AUDIT_QUEUE, self.topic)

    async def log_appender(self, mb: Any) -> None:
        rng = random.Random(self.rng.random())
        ledger = self.log
        while True:
            ids = ledger.ids.new_ids(rng.randrange(1, 200))
            first = await mb.append_many(LOG, [ledger.ids.body(i, rng) for i in ids])
            ledger.confirm(first, ids)

    async def log_auditor(self, mb: Any) -> None:
        position = await mb.committed(LOG, GROUP) or 0
        while True:
            records = await mb.read(LOG, start=position, max_records=1000, wait=0.2)
            if records:
                position = records[-1].offset + 1
                await mb.commit(LOG, GROUP, position)
                self.log.last_commit = max(self.log.last_commit, position)

    async def responder(self, mb: Any) -> None:
        async with mb.respond(SUBJECT, group="echo") as requests:
            async for request in requests:
                await request.reply(request.body)

    async def requester(self, mb: Any) -> None:
        rng = random.Random(self.rng.random())
        while True:
            number = self.requests["sent"]
            self.requests["sent"] += 1
            body = b"request|%d|%s" % (number, b"." * rng.randrange(0, 64))
            try:
                reply = await mb.request(SUBJECT, body, timeout=5.0)
            except (NoResponders, ResponderGone, Timeout):
                continue  # responders come and go with the server: not an error
            self.requests["answered"] += 1
            if reply.body != body:
                self.requests["wrong_replies"] += 1

    async def load_then_kill(self, server: BrokerProcess) -> None:
        workers: list[tuple[str, Callable[[Any], Awaitable[None]]]] = [
            ("producer-1", self.queue_producer),
            ("producer-2", self.queue_producer),
            ("consumer-1", self.queue_consumer),
            ("consumer-2", self.queue_consumer),
            ("publisher", self.topic_publisher),
            ("audit-consumer", self.audit_consumer),
            ("appender-1", self.log_appender),
            ("appender-2", self.log_appender),
            ("auditor", self.log_auditor),
            ("responder-1", self.responder),
            ("responder-2", self.responder),
            ("requester-1", self.requester),
            ("requester-2", self.requester),
        ]
        load_for = self.rng.uniform(0.05, self.max_load_seconds)
        with trio.fail_after(load_for + 60):
            async with trio.open_nursery() as nursery:
                for name, worker in workers:
                    nursery.start_soon(self._guard, name, worker, server.url)
                await trio.sleep(load_for)
                server.kill()

    # -- the campaign --------------------------------------------------------------

    def run(
        self,
        cycles: int,
        progress: Callable[[str], None] | None = None,
        max_seconds: float | None = None,
    ) -> Report:
        """Run up to ``cycles`` cycles, none started after ``max_seconds``; then the final check."""
        started = time.monotonic()
        server = self.start_server()
        try:
            trio.run(self.setup, server.url)
            for cycle in range(cycles):
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    break
                if cycle and self.rng.random() < self.early_kill_chance:
                    # Kill it again while it starts and recovers (or just
                    # after): recovery itself must survive a crash.
                    server.kill()
                    self._note_server_log(server)
                    BrokerProcess.launch_and_kill(
                        self.rng.uniform(0.1, 0.8), self.data_dir, "--fsync", self.fsync
                    )
                    server = self.start_server()
                    self.report.early_kills += 1
                trio.run(self.check_after_restart, server.url)
                trio.run(self.load_then_kill, server)
                self._note_server_log(server)
                self.report.cycles += 1
                server = self.start_server()
                if progress is not None:
                    progress(
                        f"cycle {cycle + 1}/{cycles}: queue {sum(self.queue.confirmed)} "
                        f"topic {sum(self.topic.confirmed)} log {sum(self.log.ids.confirmed)} "
                        "confirmed so far"
                    )
            trio.run(self.check_after_restart, server.url)
            trio.run(self.final_check, server.url)
        finally:
            if self.server is not None:
                self.server.stop()
                self._note_server_log(self.server)
        self.report.seconds = time.monotonic() - started
        return self.report

    async def final_check(self, url: str) -> None:
        async with minibroker.connect(url) as mb:
            await self._drain(mb, QUEUE, self.queue)
            await self._drain(mb, AUDIT_QUEUE, self.topic)
            records = await self._read_all(mb)
        self.report.queue = self.queue.classify()
        self.report.topic = self.topic.classify()
        self.report.log = self.log.check_all(records)
        for name, ledger in (("queue", self.queue), ("topic", self.topic), ("log", self.log.ids)):
            if ledger.unexpected_samples:
                self.report.samples[name] = [repr(b) for b in ledger.unexpected_samples]
            if ledger.partial_samples:
                self.report.samples[f"{name} partial batches"] = ledger.partial_samples

    async def _drain(self, mb: Any, queue: str, ledger: IdLedger) -> None:
        stats = await mb.queue_stats(queue)
        if stats.in_flight:
            self._error("drain", RuntimeError(f"{queue}: {stats.in_flight} in flight at restart"))
        while True:
            batch = await mb.fetch(queue, max_messages=2000)
            if not batch:
                break
            for d in batch:
                ledger.observe(d.body)
            await mb.ack(batch)
        stats = await mb.queue_stats(queue)
        if stats.ready or stats.in_flight:
            self._error("drain", RuntimeError(f"{queue} not empty after draining: {stats}"))

    async def _read_all(self, mb: Any) -> list[tuple[int, bytes]]:
        stats = await mb.log_stats(LOG)
        out: list[tuple[int, bytes]] = []
        position = stats.first_offset
        while position < stats.next_offset:
            records = await mb.read(LOG, start=position, max_records=10_000)
            if not records:
                break
            out.extend((r.offset, r.body) for r in records)
            position = records[-1].offset + 1
        return out


def run_campaign(
    cycles: int,
    *,
    data_dir: Path | None = None,
    seed: int | None = None,
    max_load_seconds: float = 2.0,
    fsync: str = "batch",
    early_kill_chance: float = 0.1,
    progress: Callable[[str], None] | None = None,
    max_seconds: float | None = None,
) -> Report:
    """Run ``cycles`` kill/restart cycles (fewer if ``max_seconds`` runs out first);
    returns the report (``report.ok``)."""
    seed = random.randrange(1 << 32) if seed is None else seed
    owned = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="crash-campaign-")) if owned else data_dir
    assert directory is not None
    try:
        campaign = Campaign(
            directory,
            seed=seed,
            max_load_seconds=max_load_seconds,
            fsync=fsync,
            early_kill_chance=early_kill_chance,
        )
        return campaign.run(cycles, progress, max_seconds)
    finally:
        if owned:
            shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.crash_campaign",
        description="SIGKILL a loaded minibroker serve again and again; check every "
        "confirmed message with a ledger.",
    )
    parser.add_argument("--cycles", type=int, default=20, help="kill/restart cycles")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument(
        "--max-load", type=float, default=2.0, help="longest load before a kill, seconds"
    )
    parser.add_argument("--fsync", choices=["always", "batch", "never"], default="batch")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="keep the data here (default: a temp dir)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start no cycle after this long, then check (default: run every cycle)",
    )
    args = parser.parse_args(argv)
    report = run_campaign(
        args.cycles,
        data_dir=args.data_dir,
        seed=args.seed,
        max_load_seconds=args.max_load,
        fsync=args.fsync,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
        max_seconds=None if args.max_minutes is None else args.max_minutes * 60,
    )
    print(report.summary())
    if args.json is not None:
        with contextlib.suppress(OSError):
            args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
