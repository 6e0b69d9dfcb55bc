"""Quick check of the log fast paths: batched append, then replay, against ``minibroker serve``.

Not a test and not the full benchmark suite; this is the quick loop for
working on logs (issue 5's goals: append at least 680k records/s in
batches, replay at least 270k records/s, 100-byte records, through TCP,
client and broker in separate processes). Run::

    python benchmarks/log_micro.py [--records 1000000] [--body 100] [--batch 1000]
        [--window 4] [--storage memory|disk|both] [--fsync batch] [--replay read|tail|both]

It starts ``minibroker serve`` on a free port (with ``--data-dir`` in a
temporary directory for ``disk``), appends ``--records`` records with
``append_many`` from one client process keeping ``--window`` batches in
flight, then replays them from offset 0 in a fresh client process: with
``read`` (one big read after another) and with a ``tail`` (pushes, flow
controlled). Every replayed record is checked: dense offsets, the body
carrying its sequence number. Prints records/s and MB/s of body data.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import minibroker  # noqa: E402

LOG = "bench.log"


async def appender(url: str, count: int, batch: int, window: int, body: int) -> dict[str, Any]:
    pad = b"x" * (body - 8)
    async with minibroker.connect(url) as mb:
        await mb.create_log(LOG)
        in_flight = trio.Semaphore(window)
        cpu = time.process_time()
        start = time.perf_counter()

        async def send(bodies: list[bytes], expected: int) -> None:
            try:
                first = await mb.append_many(LOG, bodies)
                if first != expected:
                    raise AssertionError(f"batch got offset {first}, expected {expected}")
            finally:
                in_flight.release()

        async with trio.open_nursery() as nursery:
            seq = 0
            while seq < count:
                n = min(batch, count - seq)
                await in_flight.acquire()
                bodies = [(seq + i).to_bytes(8, "big") + pad for i in range(n)]
                # The broker assigns offsets in arrival order, and one connection
                # keeps its frames in order: batch k starts at k * batch.
                nursery.start_soon(send, bodies, seq)
                seq += n
        return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}


def _check(records: list[Any], expected: int) -> int:
    for record in records:
        if record.offset != expected or int.from_bytes(record.body[:8], "big") != expected:
            raise AssertionError(f"record {expected} is missing or out of order")
        expected += 1
    return expected


async def replayer(url: str, count: int, mode: str, max_bytes: int) -> dict[str, Any]:
    async with minibroker.connect(url) as mb:
        cpu = time.process_time()
        start = time.perf_counter()
        expected = 0
        if mode == "read":
            while expected < count:
                records = await mb.read(
                    LOG, start=expected, max_records=100_000, max_bytes=max_bytes
                )
                expected = _check(records, expected)
        else:
            async with mb.tail(LOG, start=0, max_bytes=max_bytes) as tail:
                while expected < count:
                    expected = _check(await tail.get_batch(100_000), expected)
        return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the broker did not start on port {port}")


def _run_role(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, env=env, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_one(args: argparse.Namespace, storage: str) -> None:
    port = free_port()
    command = [sys.executable, "-m", "minibroker", "serve", "--port", str(port)]
    data_dir = None
    if storage == "disk":
        data_dir = tempfile.TemporaryDirectory(prefix="mb-log-bench-")
        command += ["--data-dir", data_dir.name, "--fsync", args.fsync]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        url = f"minibroker://127.0.0.1:{port}"
        common = ["--url", url, "--records", str(args.records), "--body", str(args.body)]
        cpu0 = _cpu_seconds(server.pid)
        appended = _run_role(
            [*common, "--role", "append", "--batch", str(args.batch), "--window", str(args.window)]
        )
        cpu1 = _cpu_seconds(server.pid)
        label = storage if storage == "memory" else f"disk, fsync={args.fsync}"
        mb = args.records * args.body / 1e6
        print(
            f"[{label}] append {args.records:,} x {args.body} B in batches of {args.batch}: "
            f"{args.records / appended['seconds']:,.0f} records/s, "
            f"{mb / appended['seconds']:,.1f} MB/s "
            f"(CPU µs/record: broker {(cpu1 - cpu0) * 1e6 / args.records:.2f}, "
            f"client {appended['cpu'] * 1e6 / args.records:.2f})",
            flush=True,
        )
        modes = ["read", "tail"] if args.replay == "both" else [args.replay]
        for mode in modes:
            cpu0 = _cpu_seconds(server.pid)
            replayed = _run_role(
                [*common, "--role", "replay", "--mode", mode, "--max-bytes", str(args.max_bytes)]
            )
            cpu1 = _cpu_seconds(server.pid)
            print(
                f"[{label}] replay with {mode}: "
                f"{args.records / replayed['seconds']:,.0f} records/s, "
                f"{mb / replayed['seconds']:,.1f} MB/s "
                f"(CPU µs/record: broker {(cpu1 - cpu0) * 1e6 / args.records:.2f}, "
                f"client {replayed['cpu'] * 1e6 / args.records:.2f})",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
        if data_dir is not None:
            data_dir.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--body", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--storage", choices=["memory", "disk", "both"], default="both")
    parser.add_argument("--fsync", choices=["always", "batch", "never"], default="batch")
    parser.add_argument("--replay", choices=["read", "tail", "both"], default="both")
    parser.add_argument("--max-bytes", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--url")
    parser.add_argument("--role", choices=["append", "replay"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["read", "tail"], default="read", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "append":
        report = trio.run(appender, args.url, args.records, args.batch, args.window, args.body)
        print(json.dumps(report), flush=True)
        return
    if args.role == "replay":
        report = trio.run(replayer, args.url, args.records, args.mode, args.max_bytes)
        print(json.dumps(report), flush=True)
        return
    for storage in ["memory", "disk"] if args.storage == "both" else [args.storage]:
        run_one(args, storage)


if __name__ == "__main__":
    main()
