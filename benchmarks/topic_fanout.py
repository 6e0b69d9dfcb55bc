"""Quick check of topic fan-out: 1 publisher, N subscriber processes, ``minibroker serve``.

Not a test and not the full benchmark suite (``python -m benchmarks`` runs W2
against RabbitMQ and NATS too); this is the quick loop for working on the
topic fast path. Run::

    python benchmarks/topic_fanout.py [--messages 200000] [--subscribers 4]
        [--batch 200] [--window 8] [--body 100] [--url minibroker://127.0.0.1:PORT]

Without ``--url`` it starts ``minibroker serve`` on a free port and stops it
afterwards. Each subscriber counts its messages and checks they arrive in
publish order; the publisher sends ``--messages`` 100-byte bodies with
``publish_many`` in batches of ``--batch``, keeping ``--window`` batches in
flight. Delivered/s is the sum over subscribers of messages received divided
by the time from the first publish to the last delivery.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import minibroker  # noqa: E402

TOPIC = "bench.fanout.data"


async def subscriber(url: str, count: int, iterate: str) -> dict[str, Any]:
    """Receive ``count`` messages, checking order; report timing on stdout."""
    async with (
        minibroker.connect(url) as mb,
        mb.subscribe("bench.fanout.*", buffer=1_000_000) as sub,
    ):
        print("ready", flush=True)
        cpu = time.process_time()
        expected = 0
        if iterate == "each":
            async for message in sub:
                if int.from_bytes(message.body[:8], "big") != expected:
                    raise AssertionError(f"message {expected} is missing or out of order")
                expected += 1
                if expected == count:
                    break
        else:
            while expected < count:
                for message in await sub.get_batch(100_000):
                    if int.from_bytes(message.body[:8], "big") != expected:
                        raise AssertionError(f"message {expected} is missing or out of order")
                    expected += 1
        return {
            "received": expected,
            "last": time.time(),
            "dropped": sub.dropped,
            "cpu": time.process_time() - cpu,
        }


async def publisher(url: str, count: int, batch: int, window: int, body: int) -> dict[str, Any]:
    pad = b"x" * (body - 8)
    async with minibroker.connect(url) as mb:
        cpu = time.process_time()
        start = time.time()
        next_seq = 0
        in_flight = trio.Semaphore(window)

        async def send(bodies: list[bytes]) -> None:
            try:
                await mb.publish_many(TOPIC, bodies)
            finally:
                in_flight.release()

        async with trio.open_nursery() as nursery:
            while next_seq < count:
                n = min(batch, count - next_seq)
                await in_flight.acquire()
                bodies = [(next_seq + i).to_bytes(8, "big") + pad for i in range(n)]
                nursery.start_soon(send, bodies)
                next_seq += n
        return {"start": start, "end": time.time(), "cpu": time.process_time() - cpu}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--body", type=int, default=100)
    parser.add_argument("--iterate", choices=["batch", "each"], default="each")
    parser.add_argument("--url")
    parser.add_argument("--role", choices=["subscriber", "publisher"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "subscriber":
        print(json.dumps(trio.run(subscriber, args.url, args.messages, args.iterate)), flush=True)
        return
    if args.role == "publisher":
        report = trio.run(publisher, args.url, args.messages, args.batch, args.window, args.body)
        print(json.dumps(report), flush=True)
        return

    server = None
    url = args.url
    if url is None:
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "minibroker", "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port)
        url = f"minibroker://127.0.0.1:{port}"
    server_cpu0 = _cpu_seconds(server.pid) if server is not None else 0.0
    me = [sys.executable, __file__, "--url", url, "--messages", str(args.messages)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        subs = [
            subprocess.Popen(
                [*me, "--role", "subscriber", "--iterate", args.iterate],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(args.subscribers)
        ]
        for sub in subs:
            assert sub.stdout is not None
            if sub.stdout.readline().strip() != "ready":
                raise RuntimeError("a subscriber failed to start")
        pub = subprocess.run(
            [
                *me,
                "--role",
                "publisher",
                "--batch",
                str(args.batch),
                "--window",
                str(args.window),
                "--body",
                str(args.body),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            check=True,
        )
        published = json.loads(pub.stdout)
        reports = []
        for sub in subs:
            out, _ = sub.communicate(timeout=120)
            reports.append(json.loads(out.strip().splitlines()[-1]))
        server_cpu = _cpu_seconds(server.pid) - server_cpu0 if server is not None else 0.0
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    delivered = sum(r["received"] for r in reports)
    elapsed = max(r["last"] for r in reports) - published["start"]
    publish_time = published["end"] - published["start"]
    print(
        f"{args.subscribers} subscribers x {args.messages:,} messages of {args.body} bytes "
        f"(batch {args.batch}, window {args.window}, iterate {args.iterate}): "
        f"{delivered / elapsed:,.0f} delivered/s, publish {args.messages / publish_time:,.0f}/s, "
        f"dropped {sum(r['dropped'] for r in reports)}"
    )
    per_message = 1e6 / delivered
    print(
        "CPU µs per delivered message: "
        f"broker {server_cpu * per_message:.2f}, "
        f"subscribers {sum(r['cpu'] for r in reports) * per_message:.2f}, "
        f"publisher {published['cpu'] * per_message:.2f}"
    )


if __name__ == "__main__":
    main()
