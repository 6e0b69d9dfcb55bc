"""Crash test: a real ``minibroker serve --data-dir`` killed with SIGKILL while producers publish.

Producers put batches into a durable queue as fast as the broker confirms
them and keep a ledger: every body they sent, and every body whose batch the
broker confirmed. A consumer fetches and acks at the same time and records
what it received and which acks the broker confirmed. The server is killed
in the middle of all that, restarted on the same directory, the queue is
drained, and the ledger is checked, Jepsen style:

* lost = 0: every confirmed message was received before the crash or is in
  the queue after it;
* unexpected = 0: nothing in the queue after the restart was never sent;
* an ack the broker confirmed is never undone: those messages do not come back
  (acked a batch per frame, and one message per frame with many in flight, so
  that many acks share one group commit, which writes them as one record);
* duplicates (received before the crash and again after it, whose ack was
  not confirmed in time) are allowed, at least once, and reported.

Twice over, so an already recovered (and compacted) journal recovers too.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

import minibroker
from benchmarks.broker_process import BrokerProcess
from minibroker.client.queue_wire import Delivery
from minibroker.errors import BrokerError

pytestmark = pytest.mark.slow

QUEUE = "ledger"
PRODUCERS = 3
BATCH = 100
#: Confirmed messages to wait for before pulling the plug (per round).
KILL_AFTER = 25_000


@dataclass
class Ledger:
    sent: set[bytes] = field(default_factory=set)
    confirmed: set[bytes] = field(default_factory=set)
    received: list[bytes] = field(default_factory=list)
    ack_confirmed: set[bytes] = field(default_factory=set)


def body_of(round_: int, producer: int, seq: int) -> bytes:
    return b"r%d-p%d-%08d|" % (round_, producer, seq) + b"." * 80


async def load_and_kill(server: BrokerProcess, ledger: Ledger, round_: int, acks: str) -> None:
    enough = trio.Event()

    async def producer(index: int) -> None:
        seq = 0
        async with minibroker.connect(server.url) as mb:
            while True:
                bodies = [body_of(round_, index, seq + i) for i in range(BATCH)]
                seq += BATCH
                ledger.sent.update(bodies)
                assert await mb.put_many(QUEUE, bodies) == BATCH
                ledger.confirmed.update(bodies)
                if len(ledger.confirmed) >= KILL_AFTER:
                    enough.set()

    async def consumer() -> None:
        async with minibroker.connect(server.url) as mb:
            while True:
                batch = await mb.fetch(QUEUE, max_messages=200, wait=1.0)
                ledger.received.extend(d.body for d in batch)
                if not batch:
                    continue
                if acks == "batch":
                    await mb.ack(batch)
                    ledger.ack_confirmed.update(d.body for d in batch)
                    continue
                async with trio.open_nursery() as acking:  # one ack frame per message
                    for d in batch:
                        acking.start_soon(ack_one, mb, d)

    async def ack_one(mb: minibroker.Client, delivery: Delivery) -> None:
        with contextlib.suppress(BrokerError, OSError):  # the server died: expected
            await mb.ack([delivery])
            ledger.ack_confirmed.add(delivery.body)

    async def guarded(task: object, *args: object) -> None:
        with contextlib.suppress(BrokerError, OSError):  # the server died: expected
            await task(*args)  # type: ignore[operator]

    # Every task ends on its own once its connection is gone with the server.
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for index in range(PRODUCERS):
                nursery.start_soon(guarded, producer, index)
            nursery.start_soon(guarded, consumer)
            await enough.wait()
            server.kill()


async def drain(server: BrokerProcess) -> list[bytes]:
    """Everything the restarted broker holds, acked as it is read."""
    async with minibroker.connect(server.url) as mb:
        stats = await mb.queue_stats(QUEUE)
        assert stats.durable and stats.in_flight == 0
        bodies: list[bytes] = []
        if stats.ready:
            async with mb.consume(QUEUE, prefetch=2000) as deliveries:
                async for d in deliveries:
                    bodies.append(d.body)
                    await d.ack()
                    if len(bodies) == stats.ready:
                        break
        after = await mb.queue_stats(QUEUE)
        assert (after.ready, after.in_flight) == (0, 0)
        return bodies


def check(ledger: Ledger, drained: list[bytes]) -> dict[str, int]:
    present = set(drained)
    lost = ledger.confirmed - present - set(ledger.received)
    unexpected = present - ledger.sent
    undone_acks = ledger.ack_confirmed & present
    repeated = sum(n - 1 for n in Counter(drained).values() if n > 1)
    duplicates = len(present & set(ledger.received)) + repeated
    assert not lost, f"{len(lost)} confirmed messages lost, e.g. {sorted(lost)[:3]}"
    assert not unexpected, f"{len(unexpected)} unexpected messages, e.g. {sorted(unexpected)[:3]}"
    assert not undone_acks, f"{len(undone_acks)} confirmed acks undone by the crash"
    assert ledger.ack_confirmed, "no ack was confirmed before the kill: nothing was checked"
    return {
        "confirmed": len(ledger.confirmed),
        "received before": len(ledger.received),
        "acks confirmed": len(ledger.ack_confirmed),
        "drained after": len(drained),
        "lost": 0,
        "unexpected": 0,
        "duplicates": duplicates,
    }


@pytest.mark.parametrize("acks", ["batch", "each"])
def test_confirmed_puts_survive_sigkill(tmp_path: Path, acks: str) -> None:
    data_dir = tmp_path / "data"
    server = BrokerProcess.start(data_dir)
    try:
        with minibroker.connect_sync(server.url) as mb:
            mb.declare_queue(QUEUE, durable=True, visibility_timeout=60)
        for round_ in range(2):
            ledger = Ledger()
            trio.run(load_and_kill, server, ledger, round_, acks)
            assert len(ledger.confirmed) >= KILL_AFTER
            server = BrokerProcess.start(data_dir)
            report = check(ledger, trio.run(drain, server))
            print(f"round {round_}: {report}")  # duplicates are allowed: at least once
        assert any("recovered" in line for line in server.log), "".join(server.log)
    finally:
        server.stop()
