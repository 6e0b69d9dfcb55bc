"""CPU per message of W1's two client processes, old client against new, alternated.

W1 (benchmarks/targets/minibroker.py) is one producer process putting
through ``mb.queue_producer`` and one consumer process iterating ``async
with mb.consume(q) as c: async for d in c: ...; await d.ack()``, beside a
``minibroker serve``. On a shared two-core machine wall-clock rates are
noise, so this reports what each client process spent: its
``time.process_time`` from its first put (first delivery) to its last, per
message. Each round runs the producer and the consumer together against one
broker, once with the client of this tree and once with the client found
under ``--old`` (a directory holding another ``minibroker`` package, e.g.
``git archive main minibroker | tar -x -C /tmp/old``), in alternating order;
the broker is this tree's in both. Run::

    python -m benchmarks.w1_client_cpu --old /tmp/old [--rounds 5] [--messages 200000]
        [--consumer trio|asyncio|blocking]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SEQ_BYTES = 8


def _bodies(count: int, size: int) -> list[bytes]:
    pad = b"x" * max(0, size - SEQ_BYTES)
    return [i.to_bytes(SEQ_BYTES, "big") + pad for i in range(count)]


async def produce(url: str, queue: str, count: int, body: int, batch: int) -> dict[str, Any]:
    import minibroker

    bodies = _bodies(count, body)
    async with minibroker.connect(url) as mb:
        await mb.declare_queue(queue)
        cpu = time.process_time()
        async with mb.queue_producer(queue, max_batch=batch) as producer:
            for first in range(0, count, batch):
                await producer.put_many(bodies[first : first + batch])
        return {"cpu": time.process_time() - cpu}


async def consume_async(url: str, queue: str, count: int, flavour: str) -> dict[str, Any]:
    import minibroker

    connect = minibroker.connect if flavour == "trio" else minibroker.aio.connect
    seen = bytearray(count)
    async with connect(url) as mb:
        await mb.declare_queue(queue)
        print("ready", flush=True)
        cpu = time.process_time()
        distinct = 0
        async with mb.consume(queue, prefetch=2000, ack_every=100) as deliveries:
            async for d in deliveries:
                seq = int.from_bytes(d.body[:SEQ_BYTES], "big")
                if not seen[seq]:
                    seen[seq] = 1
                    distinct += 1
                await d.ack()
                if distinct == count:
                    break
        return {"cpu": time.process_time() - cpu}


def consume_blocking(url: str, queue: str, count: int) -> dict[str, Any]:
    import minibroker

    seen = bytearray(count)
    with minibroker.connect_sync(url) as mb:
        mb.declare_queue(queue)
        print("ready", flush=True)
        cpu = time.process_time()
        distinct = 0
        with mb.consume(queue, prefetch=2000, ack_every=100) as deliveries:
            for d in deliveries:
                seq = int.from_bytes(d.body[:SEQ_BYTES], "big")
                if not seen[seq]:
                    seen[seq] = 1
                    distinct += 1
                d.ack()
                if distinct == count:
                    break
        return {"cpu": time.process_time() - cpu}


def _spawn(client_path: str, args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{client_path}{os.pathsep}{ROOT}"}
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.w1_client_cpu", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=client_path,
    )


def _result(proc: subprocess.Popen[str]) -> float:
    out, _ = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"a role failed (exit {proc.returncode})")
    cpu: float = json.loads(out.strip().splitlines()[-1])["cpu"]
    return cpu


def one_run(
    url: str, client_path: str, queue: str, args: argparse.Namespace
) -> tuple[float, float]:
    """Producer and consumer CPU µs per message of one W1 run with ``client_path``'s client."""
    common = ["--url", url, "--queue", queue, "--messages", str(args.messages)]
    consumer = _spawn(client_path, [*common, "--role", "consume", "--consumer", args.consumer])
    assert consumer.stdout is not None
    if consumer.stdout.readline().strip() != "ready":
        raise RuntimeError("the consumer did not start")
    producer = _spawn(client_path, [*common, "--role", "produce"])
    p, c = _result(producer), _result(consumer)
    return p * 1e6 / args.messages, c * 1e6 / args.messages


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--old", help="a directory holding the old minibroker package")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--consumer", choices=["trio", "asyncio", "blocking"], default="trio")
    parser.add_argument("--url")
    parser.add_argument("--queue", default="w1.cpu")
    parser.add_argument("--role", choices=["produce", "consume"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "produce":
        import trio

        report = trio.run(produce, args.url, args.queue, args.messages, 100, 1000)
    elif args.role == "consume" and args.consumer == "blocking":
        report = consume_blocking(args.url, args.queue, args.messages)
    elif args.role == "consume":
        import asyncio

        import trio

        if args.consumer == "trio":
            report = trio.run(consume_async, args.url, args.queue, args.messages, "trio")
        else:
            report = asyncio.run(consume_async(args.url, args.queue, args.messages, "asyncio"))
    else:
        _compare(args)
        return
    print(json.dumps(report), flush=True)


def _compare(args: argparse.Namespace) -> None:
    from benchmarks.broker_process import BrokerProcess

    sides = {"new": str(ROOT)}
    if args.old:
        sides["old"] = str(Path(args.old).resolve())
    costs: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    broker = BrokerProcess.start(None)
    try:
        url = f"minibroker://127.0.0.1:{broker.port}"
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                cost = one_run(url, sides[name], f"w1.cpu.{r}.{name}", args)
                costs[name].append(cost)
                print(f"round {r} {name}: producer {cost[0]:.3f}, consumer {cost[1]:.3f} µs/msg")
    finally:
        broker.stop()
    for name, runs in costs.items():
        print(
            f"{name}: median CPU µs/msg over {len(runs)} runs of {args.messages:,} x 100 B "
            f"({args.consumer} consumer): producer {statistics.median(r[0] for r in runs):.3f}, "
            f"consumer {statistics.median(r[1] for r in runs):.3f}"
        )


if __name__ == "__main__":
    main()
