"""Micro-benchmark: ping through each Python client (round-trip latency, pipelined rate).

    .venv/bin/python -m benchmarks.ping
    .venv/bin/python benchmarks/ping.py --count 5000 --total 200000 --json ping.json

A ``minibroker serve`` subprocess on a free port serves the Trio, asyncio and
blocking clients (this process); the in-process client talks to an embedded
broker in this process's Trio run, over a memory stream, with no socket.

Two numbers per client:

* **sequential round trip**: one ping at a time (16-byte payload), each timed;
  p50 and p99 in microseconds. This is loopback latency plus the wake-ups on
  both sides (DESIGN.md's probes: 53-78 µs p50 for every framework tried);
* **pipelined pings/s**: many pings in flight on ONE connection. Each ping is
  one request frame in and one reply frame out, so the broker handles twice
  this many frames. Trio, asyncio and in-process: ``--concurrency`` tasks
  each pinging in a loop. Blocking: ``--threads`` threads each pinging in a
  loop, and one thread sending windows of ``--window`` pings with
  ``_call_many`` (one send per window).

Every reply is checked to be the echo of its own request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio

import minibroker
import minibroker.aio
from minibroker.client.protocol import Call

PAYLOAD = b"0123456789abcdef"
WARMUP = 300


# ------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve_subprocess() -> Iterator[str]:
    """``minibroker serve`` on a free port; yields its URL once it accepts."""
    port = _free_port()
    command = [sys.executable, "-m", "minibroker", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--log-level", "warning"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"minibroker serve exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        yield f"minibroker://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------- measuring


def _summary(samples_ns: list[int]) -> dict[str, float]:
    samples = sorted(samples_ns)
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000,
        "mean_us": statistics.fmean(samples) / 1000,
    }


async def _sequential_async(ping: Callable[[bytes], Awaitable[Any]], count: int) -> list[int]:
    for _ in range(WARMUP):
        await ping(PAYLOAD)
    clock = time.perf_counter_ns
    samples = []
    for _ in range(count):
        start = clock()
        reply = await ping(PAYLOAD)
        samples.append(clock() - start)
        if reply != PAYLOAD:
            raise AssertionError("wrong reply")
    return samples


async def _pipelined_trio(mb: minibroker.Client, total: int, concurrency: int) -> float:
    per_task = total // concurrency

    async def worker(index: int) -> None:
        payload = b"%d" % index
        for _ in range(per_task):
            if await mb.ping(payload) != payload:
                raise AssertionError("reply matched to the wrong call")

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for index in range(concurrency):
            nursery.start_soon(worker, index)
    return per_task * concurrency / (time.perf_counter() - start)


async def _pipelined_asyncio(mb: minibroker.aio.Client, total: int, concurrency: int) -> float:
    per_task = total // concurrency

    async def worker(index: int) -> None:
        payload = b"%d" % index
        for _ in range(per_task):
            if await mb.ping(payload) != payload:
                raise AssertionError("reply matched to the wrong call")

    start = time.perf_counter()
    await asyncio.gather(*(worker(index) for index in range(concurrency)))
    return per_task * concurrency / (time.perf_counter() - start)


def bench_trio(url: str, args: argparse.Namespace) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with minibroker.connect(url) as mb:
            samples = await _sequential_async(mb.ping, args.count)
            rate = await _pipelined_trio(mb, args.total, args.concurrency)
        return {"client": "trio", **_summary(samples), "pings_per_s": rate}

    return trio.run(main)


def bench_inprocess(args: argparse.Namespace) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with minibroker.open_broker() as broker, broker.connect() as mb:
            samples = await _sequential_async(mb.ping, args.count)
            rate = await _pipelined_trio(mb, args.total, args.concurrency)
        return {"client": "in-process", **_summary(samples), "pings_per_s": rate}

    return trio.run(main)


def bench_asyncio(url: str, args: argparse.Namespace) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with minibroker.aio.connect(url) as mb:
            samples = await _sequential_async(mb.ping, args.count)
            rate = await _pipelined_asyncio(mb, args.total, args.concurrency)
        return {"client": "asyncio", **_summary(samples), "pings_per_s": rate}

    return asyncio.run(main())


def bench_blocking(url: str, args: argparse.Namespace) -> dict[str, Any]:
    with minibroker.connect_sync(url) as mb:
        for _ in range(WARMUP):
            mb.ping(PAYLOAD)
        clock = time.perf_counter_ns
        samples = []
        for _ in range(args.count):
            start = clock()
            reply = mb.ping(PAYLOAD)
            samples.append(clock() - start)
            if reply != PAYLOAD:
                raise AssertionError("wrong reply")

        # Many threads, each pinging in a loop (sends coalesce under contention).
        per_thread = args.total // 4 // args.threads
        failures: list[BaseException] = []

        def worker(index: int) -> None:
            payload = b"%d" % index
            try:
                for _ in range(per_thread):
                    if mb.ping(payload) != payload:
                        raise AssertionError("reply matched to the wrong call")
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
        start_s = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        threaded_rate = per_thread * args.threads / (time.perf_counter() - start_s)
        if failures:
            raise failures[0]

        # One thread, windows of pipelined calls in one send each.
        windows = max(1, args.total // args.window)
        calls = [Call("ping", {"data": b"%d" % i}) for i in range(args.window)]
        expected = [call.fields["data"] for call in calls]
        start_s = time.perf_counter()
        for _ in range(windows):
            if mb._call_many(calls) != expected:
                raise AssertionError("reply matched to the wrong call")
        window_rate = windows * args.window / (time.perf_counter() - start_s)
    return {
        "client": "blocking",
        **_summary(samples),
        "pings_per_s": window_rate,
        "pings_per_s_threads": threaded_rate,
    }


# ------------------------------------------------------------------ main


def _table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "| client | round trip p50 (µs) | p99 (µs) | pipelined pings/s | notes |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        if row["client"] == "blocking":
            note = (
                f"_call_many windows of {args.window}; "
                f"{args.threads} threads looping: {row['pings_per_s_threads']:,.0f}/s"
            )
        else:
            note = f"{args.concurrency} tasks looping on one connection"
        if row["client"] == "in-process":
            note += "; embedded broker in the same process, no socket"
        lines.append(
            f"| {row['client']} | {row['p50_us']:.0f} | {row['p99_us']:.0f} "
            f"| {row['pings_per_s']:,.0f} | {note} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=5000, help="sequential pings per client")
    parser.add_argument("--total", type=int, default=100_000, help="pipelined pings per client")
    parser.add_argument("--concurrency", type=int, default=128, help="tasks for pipelining")
    parser.add_argument("--threads", type=int, default=16, help="threads (blocking client)")
    parser.add_argument("--window", type=int, default=1000, help="_call_many window (blocking)")
    parser.add_argument(
        "--only",
        action="append",
        choices=["trio", "asyncio", "blocking", "in-process"],
        help="run only these clients (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    wanted = args.only or ["trio", "asyncio", "blocking", "in-process"]

    rows: list[dict[str, Any]] = []
    with serve_subprocess() as url:
        if "trio" in wanted:
            rows.append(bench_trio(url, args))
        if "asyncio" in wanted:
            rows.append(bench_asyncio(url, args))
        if "blocking" in wanted:
            rows.append(bench_blocking(url, args))
    if "in-process" in wanted:
        rows.append(bench_inprocess(args))

    print(_table(rows, args))
    print(
        f"\n{args.count} sequential pings of {len(PAYLOAD)} bytes, {args.total} pipelined; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs. Each ping is a request "
        "frame and a reply frame."
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "args": vars(args) | {"json": None}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
