"""Quick check of the queue fast path: put_many -> consume -> batched acks, through TCP.

Not a test and not the full benchmark suite; this is the quick loop for
working on queues (issue 3's goal: at least 150k messages/s end to end with
one producer process and one consumer process, 100-byte bodies, every
message acked). Run::

    python benchmarks/queue_micro.py [--messages 500000] [--body 100] [--batch 1000]
        [--window 4] [--prefetch 2000] [--ack-every 100] [--storage memory|disk|both]
        [--fsync batch] [--consumer trio|asyncio|blocking] [--producer put_many|queue_producer]
        [--profile DIR]

It starts ``minibroker serve`` on a free port (with ``--data-dir`` in a
temporary directory for ``disk``, the queue then declared durable), starts a
consumer process iterating ``mb.consume(queue, prefetch=...)`` and acking
every delivery, then a producer process sending ``put_many`` batches with
``--window`` batches in flight (each put is confirmed: for a durable queue
that is after group commit). Every body carries its sequence number; the
consumer checks that each one arrived (duplicates are counted, not errors:
at-least-once). Prints end-to-end messages/s (from the producer's first put
to the consumer's last delivery; ``perf_counter`` is the same monotonic clock
in every process), and the CPU microseconds per message of each process.

``--profile DIR`` records the server and both clients with py-spy (``pip
install py-spy``) into ``DIR/{server,producer,consumer}-<storage>.txt``
(collapsed stacks: sort by count to see the top frames).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUEUE = "bench.jobs"
SEQ_BYTES = 8


def _bodies(count: int, size: int) -> list[bytes]:
    pad = b"x" * max(0, size - SEQ_BYTES)
    return [i.to_bytes(SEQ_BYTES, "big") + pad for i in range(count)]


# ------------------------------------------------------------------ roles


async def producer(
    url: str, count: int, body: int, batch: int, window: int, kind: str = "put_many"
) -> dict[str, Any]:
    import trio

    import minibroker

    bodies = _bodies(count, body)
    if kind == "queue_producer":  # the W1 producer (benchmarks/targets/minibroker.py)
        async with minibroker.connect(url) as mb:
            cpu = time.process_time()
            start = time.perf_counter()
            async with mb.queue_producer(QUEUE, max_batch=batch) as queued:
                for first in range(0, count, batch):
                    await queued.put_many(bodies[first : first + batch])
            end = time.perf_counter()
            return {"start": start, "end": end, "cpu": time.process_time() - cpu}
    async with minibroker.connect(url) as mb:
        in_flight = trio.Semaphore(window)
        cpu = time.process_time()
        start = time.perf_counter()

        async def send(chunk: list[bytes]) -> None:
            try:
                await mb.put_many(QUEUE, chunk)
            finally:
                in_flight.release()

        async with trio.open_nursery() as nursery:
            for first in range(0, count, batch):
                await in_flight.acquire()
                nursery.start_soon(send, bodies[first : first + batch])
        end = time.perf_counter()
        return {"start": start, "end": end, "cpu": time.process_time() - cpu}


class Tally:
    """Which sequence numbers arrived (a bytearray bitmap), and how often twice."""

    def __init__(self, count: int) -> None:
        self.seen = bytearray(count)
        self.distinct = 0
        self.duplicates = 0

    def add(self, body: bytes) -> None:
        seq = int.from_bytes(body[:SEQ_BYTES], "big")
        if self.seen[seq]:
            self.duplicates += 1
        else:
            self.seen[seq] = 1
            self.distinct += 1


def _consumer_report(tally: Tally, start_cpu: float, last: float) -> dict[str, Any]:
    return {
        "last": last,
        "cpu": time.process_time() - start_cpu,
        "distinct": tally.distinct,
        "duplicates": tally.duplicates,
    }


async def consumer_async(url: str, count: int, prefetch: int, ack_every: int) -> dict[str, Any]:
    """Trio or asyncio, whichever runs it: the same AsyncMethods."""
    import sniffio

    import minibroker

    tally = Tally(count)
    if sniffio.current_async_library() == "trio":
        context: Any = minibroker.connect(url)
    else:
        context = minibroker.aio.connect(url)
    async with context as mb:
        await mb.declare_queue(QUEUE, durable=True)
        print("ready", flush=True)
        cpu = time.process_time()
        last = 0.0
        async with mb.consume(QUEUE, prefetch=prefetch, ack_every=ack_every) as deliveries:
            async for d in deliveries:
                tally.add(d.body)
                await d.ack()
                if tally.distinct == count:
                    last = time.perf_counter()
                    break
        return _consumer_report(tally, cpu, last)


def consumer_blocking(url: str, count: int, prefetch: int, ack_every: int) -> dict[str, Any]:
    import minibroker

    tally = Tally(count)
    with minibroker.connect_sync(url) as mb:
        mb.declare_queue(QUEUE, durable=True)
        print("ready", flush=True)
        cpu = time.process_time()
        last = 0.0
        with mb.consume(QUEUE, prefetch=prefetch, ack_every=ack_every) as deliveries:
            for d in deliveries:
                tally.add(d.body)
                d.ack()
                if tally.distinct == count:
                    last = time.perf_counter()
                    break
        return _consumer_report(tally, cpu, last)


# ----------------------------------------------------------------- parent


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


def _spawn_role(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, env=env
    )


def _result(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"a benchmark role failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _profile(pid: int, path: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--output",
            str(path),
            "--duration",
            str(int(seconds) + 1),
            "--rate",
            "250",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_one(args: argparse.Namespace, storage: str) -> None:
    port = free_port()
    command = [sys.executable, "-m", "minibroker", "serve", "--port", str(port)]
    data_dir = None
    if storage == "disk":
        data_dir = tempfile.TemporaryDirectory(prefix="mb-queue-bench-")
        command += ["--data-dir", data_dir.name, "--fsync", args.fsync]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    profilers: list[subprocess.Popen[bytes]] = []
    try:
        wait_for_port(port)
        url = f"minibroker://127.0.0.1:{port}"
        common = ["--url", url, "--messages", str(args.messages), "--body", str(args.body)]
        consumer = _spawn_role(
            [
                *common,
                "--role",
                "consume",
                "--consumer",
                args.consumer,
                "--prefetch",
                str(args.prefetch),
                "--ack-every",
                str(args.ack_every),
            ]
        )
        assert consumer.stdout is not None
        if consumer.stdout.readline().strip() != "ready":
            raise RuntimeError("the consumer did not start")
        cpu0 = _cpu_seconds(server.pid)
        producer_proc = _spawn_role(
            [
                *common,
                "--role",
                "produce",
                "--batch",
                str(args.batch),
                "--window",
                str(args.window),
                "--producer",
                args.producer,
            ]
        )
        if args.profile:
            out = Path(args.profile)
            out.mkdir(parents=True, exist_ok=True)
            for name, pid in (
                ("server", server.pid),
                ("producer", producer_proc.pid),
                ("consumer", consumer.pid),
            ):
                spy = _profile(pid, out / f"{name}-{storage}.txt", args.profile_seconds)
                if spy is not None:
                    profilers.append(spy)
        produced = _result(producer_proc, args.timeout)
        consumed = _result(consumer, args.timeout)
        cpu1 = _cpu_seconds(server.pid)
        n = args.messages
        seconds = consumed["last"] - produced["start"]
        label = storage if storage == "memory" else f"disk, fsync={args.fsync}"
        lost = n - consumed["distinct"]
        print(
            f"[{label}] {n:,} x {args.body} B, {args.producer}({args.batch}) x{args.window} -> "
            f"{args.consumer} consume(prefetch={args.prefetch}, ack_every={args.ack_every}): "
            f"{n / seconds:,.0f} msgs/s end to end "
            f"(producer alone {n / (produced['end'] - produced['start']):,.0f}/s; "
            f"CPU µs/msg: broker {(cpu1 - cpu0) * 1e6 / n:.2f}, "
            f"producer {produced['cpu'] * 1e6 / n:.2f}, consumer {consumed['cpu'] * 1e6 / n:.2f}; "
            f"lost {lost}, duplicates {consumed['duplicates']})",
            flush=True,
        )
    finally:
        for spy in profilers:
            try:
                spy.wait(timeout=args.profile_seconds + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
        server.terminate()
        server.wait(timeout=30)
        if data_dir is not None:
            data_dir.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--body", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--prefetch", type=int, default=2000)
    parser.add_argument("--ack-every", type=int, default=100)
    parser.add_argument("--storage", choices=["memory", "disk", "both"], default="both")
    parser.add_argument("--fsync", choices=["always", "batch", "never"], default="batch")
    parser.add_argument("--consumer", choices=["trio", "asyncio", "blocking"], default="trio")
    parser.add_argument(
        "--producer",
        choices=["put_many", "queue_producer"],
        default="put_many",
        help="put_many batches with --window in flight, or mb.queue_producer (W1's)",
    )
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--profile", metavar="DIR", default=None)
    parser.add_argument("--profile-seconds", type=float, default=3.0)
    parser.add_argument("--url")
    parser.add_argument("--role", choices=["produce", "consume"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "produce":
        import trio

        report = trio.run(
            producer, args.url, args.messages, args.body, args.batch, args.window, args.producer
        )
        print(json.dumps(report), flush=True)
        return
    if args.role == "consume":
        if args.consumer == "trio":
            import trio

            report = trio.run(
                consumer_async, args.url, args.messages, args.prefetch, args.ack_every
            )
        elif args.consumer == "asyncio":
            import asyncio

            report = asyncio.run(
                consumer_async(args.url, args.messages, args.prefetch, args.ack_every)
            )
        else:
            report = consumer_blocking(args.url, args.messages, args.prefetch, args.ack_every)
        print(json.dumps(report), flush=True)
        return
    for storage in ["memory", "disk"] if args.storage == "both" else [args.storage]:
        run_one(args, storage)


if __name__ == "__main__":
    main()
