"""Message queueing with competing workers (pull): thumbnails made exactly once each.

Run it with ``python docs/examples/work_queue.py`` (no server needed: the
broker is embedded in this process, on memory storage).

The pattern
-----------

A producer puts jobs into a queue; several workers *compete* for them. Each
worker asks for work when it is ready (``fetch``: pull), does it, and
acknowledges it (``ack``). The broker hands every job to one worker at a
time, so adding workers is how the system scales, and a worker that is slow
or busy simply asks less often: flow control comes for free.

Failure is part of the pattern, and this program shows the three cases:

* a worker **crashes** holding a job (here: its connection closes without an
  ack): the broker puts the job back at the front of the queue at once and
  another worker gets it, with ``delivery_count`` 2. (A worker that hangs
  instead gets the same treatment when the queue's visibility timeout runs
  out.) So processing must be idempotent: at-least-once delivery;
* a job **fails** and the worker gives it back (``nack``): it is retried;
* a **poison** job fails every time: after ``max_deliveries`` deliveries the
  broker moves it to the dead-letter queue, with the reason in its headers,
  instead of retrying forever.

When to use it
--------------

When each piece of work must be done once, by whoever is free, eventually:
sending e-mails, resizing images, charging cards, calling a slow partner
API. Producers do not wait for the work and do not know the workers. If
several services must each react to the same event, use a topic instead
(``pubsub_fanout.py``); if the producer needs the answer now, use
request/reply (``request_reply.py``).
"""

from __future__ import annotations

import trio

import minibroker

QUEUE = "thumbnails"
DEAD = "thumbnails.dead"
JOBS = [f"photo-{n}.jpg" for n in range(1, 6)] + ["crash.jpg", "corrupt.jpg", "photo-6.jpg"]
WORKERS = 3


class WorkerCrashed(Exception):
    """Stands for a worker process dying: its connection closes without an ack."""


class Tally:
    """What the workers did, printed at the end (workers run concurrently, so the
    transcript is the sorted outcome, not the interleaving)."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.crashes: list[str] = []
        self.failures: list[tuple[str, int]] = []
        self.dead: list[str] = []
        self.finished = trio.Event()

    def check(self) -> None:
        if len(self.done) + len(self.dead) == len(JOBS):
            self.finished.set()


async def make_thumbnail(job: str, delivery_count: int) -> None:
    """The "business logic": crash.jpg kills its first worker, corrupt.jpg always fails."""
    await trio.sleep(0)  # real work would await I/O here
    if job == "crash.jpg" and delivery_count == 1:
        raise WorkerCrashed(job)
    if job == "corrupt.jpg":
        raise ValueError("not a JPEG")


async def worker(broker: minibroker.EmbeddedBroker, tally: Tally) -> None:
    """One worker process: its own connection, pulling one job at a time."""
    async with broker.connect(client_name="thumbnailer") as mb:
        while True:
            for delivery in await mb.fetch(QUEUE, max_messages=1, wait=5.0):
                job = delivery.body.decode()
                try:
                    await make_thumbnail(job, delivery.delivery_count)
                except ValueError:
                    tally.failures.append((job, delivery.delivery_count))
                    await delivery.nack(requeue=True)  # retry (or dead-letter at the limit)
                else:
                    await delivery.ack()  # done: the job leaves the queue
                    tally.done.append(job)
                    tally.check()


async def supervisor(broker: minibroker.EmbeddedBroker, tally: Tally) -> None:
    """Restart a worker whenever it crashes, as a process manager would."""
    while True:
        try:
            await worker(broker, tally)
        except WorkerCrashed as crash:
            tally.crashes.append(str(crash))


async def dead_letter_watcher(broker: minibroker.EmbeddedBroker, tally: Tally) -> None:
    """Someone has to look at poison messages: here, we just record them."""
    async with broker.connect() as mb:
        while True:
            for delivery in await mb.fetch(DEAD, max_messages=10, wait=5.0):
                headers = delivery.headers or {}
                tally.dead.append(
                    f"{delivery.body.decode()} (reason {headers['x-death-reason']}, "
                    f"{headers['x-death-count']} deliveries, from {headers['x-death-queue']!r})"
                )
                await delivery.ack()
                tally.check()


async def main() -> None:
    tally = Tally()
    async with minibroker.open_broker() as broker, broker.connect() as producer:
        await producer.declare_queue(DEAD)
        await producer.declare_queue(
            QUEUE, visibility_timeout=30, max_deliveries=3, dead_letter_queue=DEAD
        )
        async with trio.open_nursery() as nursery:
            for _ in range(WORKERS):
                nursery.start_soon(supervisor, broker, tally)
            nursery.start_soon(dead_letter_watcher, broker, tally)

            count = await producer.put_many(QUEUE, [job.encode() for job in JOBS])
            print(f"queued {count} jobs on {QUEUE!r}; {WORKERS} workers compete for them")

            await tally.finished.wait()
            nursery.cancel_scope.cancel()

        for job in tally.crashes:
            print(f"a worker crashed holding {job}: the broker requeued it, another worker made it")
        for job, count in sorted(tally.failures):
            print(f"{job} failed on delivery {count} and was given back (nack)")
        made = " ".join(sorted(tally.done))
        print(f"made {len(tally.done)} thumbnails, each exactly once: {made}")
        for line in tally.dead:
            print(f"dead letter: {line}")

        stats = await producer.queue_stats(QUEUE)
        print(
            f"queue stats: published {stats.published}, delivered {stats.delivered}, "
            f"redelivered {stats.redelivered}, acked {stats.acked}, "
            f"dead-lettered {stats.dead_lettered}, ready {stats.ready}, in flight {stats.in_flight}"
        )


if __name__ == "__main__":
    trio.run(main)
