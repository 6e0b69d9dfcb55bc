"""Quick request/reply latency check: minibroker (and NATS, when available).

    .venv/bin/python -m benchmarks.rpc_latency                 # everything found
    .venv/bin/python -m benchmarks.rpc_latency --count 2000 --only minibroker
    .venv/bin/python -m benchmarks.rpc_latency --busy-poll-us 300   # docs/operations.md

Three processes per run, all on loopback: the broker (``minibroker serve``
on a free port, or ``nats-server``), one responder process, and the
requester (this process, or a child for the blocking client). The requester
sends ``--count`` requests of ``--size`` bytes one after another (after a
warm-up) and records each round trip; then 16 concurrent requesters (Trio
tasks on one connection) measure throughput. Every reply is checked to be
the echo of its own request.

Rows (requester client / responder client):

* ``trio/trio``    Trio client on both sides (``respond`` loop);
* ``trio/serve``   Trio requester, responder via ``serve()`` (a task per request);
* ``sync/trio``    blocking-client requester (the synchronous call mode);
* ``trio/sync``    Trio requester against a blocking ``serve()`` responder (thread pool);
* ``sync/sync``    blocking client on both sides, as docs/examples/request_reply.py writes it;
* ``nats``         nats-py on both sides against nats-server (the reference).

This is a quick tool for the request/reply work; the full comparison with
RabbitMQ lives in the benchmark harness (``python -m benchmarks``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

SUBJECT = "bench.echo"
CONCURRENCY = 16


# ------------------------------------------------------------ processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


@contextmanager
def _process(
    args: list[str], ready_port: int | None = None, timeout: float = 10.0
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        if ready_port is not None:
            _wait_for_port(ready_port, timeout)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes]) -> None:
    """Children print one line once their responder is registered."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(b"ready"):
        raise RuntimeError(f"child failed to start: {line!r}")


def _child(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.rpc_latency", *args]


# ------------------------------------------------------------ responders


def _respond_trio(url: str, mode: str) -> None:
    import trio

    import minibroker

    async def main() -> None:
        async with minibroker.connect(url) as mb:
            if mode == "serve":

                async def echo(req: Any) -> bytes:
                    body: bytes = req.body
                    return body

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(mb.serve, SUBJECT, echo)
                    while mb._conn.subscriptions == {}:  # registered once the sub id is known
                        await trio.sleep(0.01)
                    print("ready", flush=True)
                return
            async with mb.respond(SUBJECT) as requests:
                print("ready", flush=True)
                async for req in requests:
                    await req.reply(req.body)

    trio.run(main)


def _respond_sync(url: str) -> None:
    import threading

    import minibroker

    with minibroker.connect_sync(url) as mb:
        thread = threading.Thread(
            target=mb.serve, args=(SUBJECT, lambda req: req.body), kwargs={"workers": 4}
        )
        thread.start()
        while not mb._conn.subscriptions:  # registered once the sub id is known
            time.sleep(0.01)
        print("ready", flush=True)
        thread.join()


def _respond_nats(url: str) -> None:
    import asyncio

    import nats

    async def main() -> None:
        nc = await nats.connect(url)

        async def echo(msg: Any) -> None:
            await msg.respond(msg.data)

        await nc.subscribe(SUBJECT, cb=echo)
        await nc.flush()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# ------------------------------------------------------------ requesters


def _summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_us": statistics.median(ordered) * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
        "rps": len(ordered) / elapsed,
    }


def _request_trio(url: str, count: int, warmup: int, size: int) -> dict[str, Any]:
    import trio

    import minibroker

    async def main() -> dict[str, Any]:
        async with minibroker.connect(url) as mb:
            body = os.urandom(size)
            for _ in range(warmup):
                await mb.request(SUBJECT, body)
            latencies: list[float] = []
            clock = time.perf_counter
            start = clock()
            for i in range(count):
                body = i.to_bytes(8, "big") + body[8:]
                t0 = clock()
                reply = await mb.request(SUBJECT, body)
                latencies.append(clock() - t0)
                if reply.body != body:
                    raise AssertionError("reply does not match its request")
            sequential = _summary(latencies, clock() - start)

            concurrent_latencies: list[float] = []
            per_task = max(1, count // CONCURRENCY)

            async def worker(index: int) -> None:
                for i in range(per_task):
                    mine = index.to_bytes(4, "big") + i.to_bytes(4, "big") + body[8:]
                    t0 = clock()
                    reply = await mb.request(SUBJECT, mine)
                    concurrent_latencies.append(clock() - t0)
                    if reply.body != mine:
                        raise AssertionError("reply does not match its request")

            start = clock()
            async with trio.open_nursery() as nursery:
                for index in range(CONCURRENCY):
                    nursery.start_soon(worker, index)
            concurrent = _summary(concurrent_latencies, clock() - start)
            return {"sequential": sequential, "concurrent": concurrent}

    result: dict[str, Any] = trio.run(main)
    return result


def _request_sync(url: str, count: int, warmup: int, size: int) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    import minibroker

    with minibroker.connect_sync(url) as mb:
        body = os.urandom(size)
        for _ in range(warmup):
            mb.request(SUBJECT, body)
        latencies: list[float] = []
        clock = time.perf_counter
        start = clock()
        for i in range(count):
            body = i.to_bytes(8, "big") + body[8:]
            t0 = clock()
            reply = mb.request(SUBJECT, body)
            latencies.append(clock() - t0)
            if reply.body != body:
                raise AssertionError("reply does not match its request")
        sequential = _summary(latencies, clock() - start)

        concurrent_latencies: list[float] = []
        per_thread = max(1, count // CONCURRENCY)

        def worker(index: int) -> None:
            for i in range(per_thread):
                mine = index.to_bytes(4, "big") + i.to_bytes(4, "big") + body[8:]
                t0 = clock()
                reply = mb.request(SUBJECT, mine)
                concurrent_latencies.append(clock() - t0)
                if reply.body != mine:
                    raise AssertionError("reply does not match its request")

        start = clock()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(worker, range(CONCURRENCY)))
        concurrent = _summary(concurrent_latencies, clock() - start)
    return {"sequential": sequential, "concurrent": concurrent}


def _request_nats(url: str, count: int, warmup: int, size: int) -> dict[str, Any]:
    import asyncio

    import nats

    async def main() -> dict[str, Any]:
        nc = await nats.connect(url)
        body = os.urandom(size)
        for _ in range(warmup):
            await nc.request(SUBJECT, body, timeout=5)
        latencies: list[float] = []
        clock = time.perf_counter
        start = clock()
        for i in range(count):
            body = i.to_bytes(8, "big") + body[8:]
            t0 = clock()
            msg = await nc.request(SUBJECT, body, timeout=5)
            latencies.append(clock() - t0)
            if msg.data != body:
                raise AssertionError("reply does not match its request")
        sequential = _summary(latencies, clock() - start)

        concurrent_latencies: list[float] = []
        per_task = max(1, count // CONCURRENCY)

        async def worker(index: int) -> None:
            for i in range(per_task):
                mine = index.to_bytes(4, "big") + i.to_bytes(4, "big") + body[8:]
                t0 = clock()
                msg = await nc.request(SUBJECT, mine, timeout=5)
                concurrent_latencies.append(clock() - t0)
                if msg.data != mine:
                    raise AssertionError("reply does not match its request")

        start = clock()
        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
        concurrent = _summary(concurrent_latencies, clock() - start)
        await nc.close()
        return {"sequential": sequential, "concurrent": concurrent}

    return asyncio.run(main())


REQUESTERS: dict[str, Callable[[str, int, int, int], dict[str, Any]]] = {
    "trio": _request_trio,
    "sync": _request_sync,
    "nats": _request_nats,
}


# ---------------------------------------------------------------- runs


def _run_minibroker(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    port = _free_port()
    url = f"minibroker://127.0.0.1:{port}"
    rows: dict[str, dict[str, Any]] = {}
    serve = [sys.executable, "-m", "minibroker", "serve", "--port", str(port)]
    if args.busy_poll_us:
        serve += ["--busy-poll-us", f"{args.busy_poll_us:g}"]
    with _process(serve, ready_port=port):
        for name, responder, requester in (
            ("trio/trio", "trio", "trio"),
            ("trio/serve", "serve", "trio"),
            ("sync/trio", "trio", "sync"),
            ("trio/sync", "sync", "trio"),
            ("sync/sync", "sync", "sync"),
        ):
            with _process(_child("responder", responder, url)) as child:
                _wait_ready(child)
                rows[name] = _run_requester(requester, url, args)
    return rows


def _run_nats(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    server = shutil.which("nats-server")
    if server is None:
        return {}
    try:
        import nats  # noqa: F401
    except ImportError:
        return {}
    port = _free_port()
    url = f"nats://127.0.0.1:{port}"
    with (
        _process([server, "-a", "127.0.0.1", "-p", str(port)], ready_port=port),
        _process(_child("responder", "nats", url)) as child,
    ):
        _wait_ready(child)
        return {"nats": _run_requester("nats", url, args)}


def _run_requester(kind: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Each requester runs in a fresh child process, so clients never share a runtime."""
    out = subprocess.run(
        _child("requester", kind, url, str(args.count), str(args.warmup), str(args.size)),
        check=True,
        capture_output=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _medians(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each figure of each row: its median over the runs."""
    merged: dict[str, dict[str, Any]] = {}
    for name, row in runs[0].items():
        merged[name] = {
            phase: {
                key: statistics.median(run[name][phase][key] for run in runs) for key in figures
            }
            for phase, figures in row.items()
        }
    return merged


def _print(rows: dict[str, dict[str, Any]]) -> None:
    nats = rows.get("nats", {}).get("sequential", {}).get("p50_us")
    print(
        f"{'requester/responder':<20} {'p50 µs':>8} {'p99 µs':>8} {'req/s':>8}   "
        f"{'16 conc. req/s':>14} {'p50 µs':>8}   {'p50 vs NATS':>11}"
    )
    for name, row in rows.items():
        seq, conc = row["sequential"], row["concurrent"]
        ratio = f"{seq['p50_us'] / nats:.2f}x" if nats else "-"
        print(
            f"{name:<20} {seq['p50_us']:>8.0f} {seq['p99_us']:>8.0f} {seq['rps']:>8.0f}   "
            f"{conc['rps']:>14.0f} {conc['p50_us']:>8.0f}   {ratio:>11}"
        )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "responder":
        kind, url = argv[1], argv[2]
        if kind == "nats":
            _respond_nats(url)
        elif kind == "sync":
            _respond_sync(url)
        else:
            _respond_trio(url, kind)
        return
    if argv and argv[0] == "requester":
        kind, url, count, warmup, size = argv[1], argv[2], *map(int, argv[3:6])
        print(json.dumps(REQUESTERS[kind](url, count, warmup, size)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="sequential requests")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--size", type=int, default=100, help="body bytes")
    parser.add_argument("--only", choices=["minibroker", "nats"], default=None)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run everything N times, interleaved, and report each figure's median "
        "(for shared or noisy machines)",
    )
    parser.add_argument(
        "--busy-poll-us",
        type=float,
        default=0,
        help="start the broker with `serve --busy-poll-us N` (default: off)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    runs: list[dict[str, dict[str, Any]]] = []
    for _ in range(args.repeat):
        rows: dict[str, dict[str, Any]] = {}
        if args.only in (None, "nats"):
            rows.update(_run_nats(args))
        if args.only in (None, "minibroker"):
            rows.update(_run_minibroker(args))
        runs.append(rows)
    rows = _medians(runs)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print(rows)


if __name__ == "__main__":
    main()
