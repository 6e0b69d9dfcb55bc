"""Does the broker give memory back? RSS of ``minibroker serve`` idle, at its peak,
and after every queue, log, subscription and connection of a workload is gone.

Not a test: memory a process gives back to the operating system depends on
the allocator as much as on the broker. It runs ``--rounds`` rounds against
one in-memory ``minibroker serve``; each round declares a queue and moves
``--messages`` through it (``put_many`` batches, ``consume``, an ack per
message), appends as many records to a log and replays them with a tail,
publishes as many to a subscriber, answers a few hundred requests, and then
deletes the queue and the log and closes every connection. The server's
RSS is sampled before the first round (idle) and after each round once the
server has settled its memory (it logs that, at the first idle second after
a burst; server/memory_settle.py), and is compared with the idle figure
(issue 19: within 10 %)::

    python -m benchmarks.memory_soak [--rounds 3] [--messages 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio

import minibroker
from benchmarks.broker_process import BrokerProcess

MIB = 1024 * 1024
#: What ``minibroker serve`` logs when it gives a burst's memory back.
SETTLED = "settled memory after a burst"
#: The goal: after every round, RSS within 10 % of idle.
WITHIN = 1.10
BATCH = 1000
BODY = b"m" * 100


async def one_round(url: str, index: int, messages: int) -> None:
    """Create, use and delete one of everything."""
    async with minibroker.connect(url) as mb:
        queue, log, topic, subject = (f"soak.{kind}.{index}" for kind in ("q", "l", "t", "s"))
        await mb.declare_queue(queue)
        for _ in range(messages // BATCH):
            await mb.put_many(queue, [BODY] * BATCH)
        received = 0
        async with mb.consume(queue, prefetch=2000) as deliveries:
            async for delivery in deliveries:
                await delivery.ack()
                received += 1
                if received == messages:
                    break
        await mb.delete_queue(queue)

        await mb.create_log(log)
        for _ in range(messages // BATCH):
            await mb.append_many(log, [BODY] * BATCH)
        replayed = 0
        async with mb.tail(log, start="earliest") as records:
            async for _ in records:
                replayed += 1
                if replayed == messages:
                    break
        await mb.delete_log(log)

        async with mb.subscribe(f"{topic}.*", buffer=BATCH) as subscription:
            for _ in range(messages // BATCH):
                await mb.publish_many(f"{topic}.a", [BODY] * BATCH)
                got = 0
                async for _ in subscription:
                    got += 1
                    if got == BATCH:
                        break

        async with trio.open_nursery() as nursery:

            async def responder(task_status: trio.TaskStatus[None]) -> None:
                async with mb.respond(subject) as requests:
                    task_status.started()
                    async for request in requests:
                        await request.reply(request.body)

            await nursery.start(responder)
            for _ in range(300):
                await mb.request(subject, b"ping", timeout=5)
            nursery.cancel_scope.cancel()


def settled_rss(server: BrokerProcess, idle: float, seen: int) -> float:
    """RSS in MiB once a settle after log line ``seen`` has brought it within 10 %
    of ``idle`` (a settle may also come in a pause of the round), or as it is
    if none does within 30 s."""
    while (rss := server.rss_bytes() / MIB) > idle * WITHIN:
        try:
            seen = server.wait_for_line(SETTLED, after=seen) + 1
        except TimeoutError:
            break
    return rss


def run(rounds: int, messages: int) -> dict[str, Any]:
    with BrokerProcess.start(None, log_level="info") as server:
        with minibroker.connect_sync(server.url) as mb:
            mb.ping(b"warm")  # the first connection's own costs count as idle
        idle = server.rss_bytes() / MIB
        after: list[float] = []
        for index in range(rounds):
            seen = len(server.log)
            trio.run(one_round, server.url, index, messages)
            after.append(settled_rss(server, idle, seen))
            print(
                f"round {index + 1}: RSS {after[-1]:.1f} MiB "
                f"({after[-1] / idle:.2f}x idle {idle:.1f} MiB)",
                flush=True,
            )
    return {
        "messages_per_round": messages,
        "idle_mib": round(idle, 1),
        "after_rounds_mib": [round(x, 1) for x in after],
        "final_over_idle": round(after[-1] / idle, 3),
        "within_10_percent": all(rss <= idle * WITHIN for rss in after),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    result = run(args.rounds, args.messages)
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    return 0 if result["within_10_percent"] else 1


if __name__ == "__main__":
    sys.exit(main())
