"""Publisher confirms through pika: CPU per message of the producer and the broker.

Not part of the comparison harness. The harness's pika producer
(BlockingConnection) can only wait for each confirm in turn, so how the broker
groups its confirms changes nothing there; an asynchronous pika producer
(SelectConnection) with a window of unconfirmed publishes is what a broker
that coalesces confirms (one Basic.Ack multiple=True for every confirm ready
in the same pass, as RabbitMQ does) saves work for. This starts
``minibroker serve --amqp-port`` from this tree and from ``--baseline DIR``
(another source tree, e.g. an unpacked ``git archive`` of an older commit)
and, round after round, runs such a producer against each in a child
process: it publishes ``--messages`` messages keeping ``--window``
unconfirmed, and reports its own CPU (``getrusage``), the confirm frames it
received, and the server's CPU (``/proc``) per message::

    python -m benchmarks.amqp_confirms [--messages 20000] [--window 1000]
        [--rounds 3] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.amqp_micro import Server
from benchmarks.sysinfo import load_average
from benchmarks.targets.base import process_cpu_seconds
from benchmarks.targets.minibroker import REPO_ROOT


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def produce(port: int, messages: int, window: int, body_size: int) -> dict[str, Any]:
    """The child: publish with confirms through pika's SelectConnection, keeping
    ``window`` unconfirmed; its CPU and the confirm frames it got."""
    import pika

    queue = f"confirms-{os.getpid()}"
    body = b"x" * body_size
    state: dict[str, Any] = {"sent": 0, "confirmed": 0, "frames": 0, "nacks": 0}
    params = pika.ConnectionParameters(
        "127.0.0.1", port, credentials=pika.PlainCredentials("guest", "guest")
    )

    def on_open(connection: Any) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel: Any) -> None:
        state["channel"] = channel
        channel.queue_declare(queue, exclusive=True, callback=lambda _: select(channel))

    def select(channel: Any) -> None:
        channel.confirm_delivery(on_confirm, callback=lambda _: start())

    def start() -> None:
        state["cpu0"], state["t0"] = _cpu(), time.perf_counter()
        fill()

    def fill() -> None:
        channel = state["channel"]
        while state["sent"] < messages and state["sent"] - state["confirmed"] < window:
            channel.basic_publish("", queue, body)
            state["sent"] += 1

    def on_confirm(frame: Any) -> None:
        method = frame.method
        state["frames"] += 1
        if method.NAME == "Basic.Nack":
            state["nacks"] += 1
        # Confirms come in order: the tag is how many are confirmed so far.
        state["confirmed"] = method.delivery_tag
        if state["confirmed"] >= messages:
            state["cpu1"], state["t1"] = _cpu(), time.perf_counter()
            connection.close()
        else:
            fill()

    connection = pika.SelectConnection(
        params,
        on_open_callback=on_open,
        on_open_error_callback=lambda *_: connection.ioloop.stop(),
        on_close_callback=lambda *_: connection.ioloop.stop(),
    )
    connection.ioloop.call_later(300, connection.ioloop.stop)
    try:
        connection.ioloop.start()
    finally:
        connection.ioloop.close()
    if "cpu1" not in state:
        return {"error": f"confirmed {state['confirmed']} of {messages}"}
    return {
        "cpu_per_msg_us": (state["cpu1"] - state["cpu0"]) * 1e6 / messages,
        "frames_per_msg": state["frames"] / messages,
        "nacks": state["nacks"],
        "rate": messages / (state["t1"] - state["t0"]),
    }


def run_once(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    cpu0 = process_cpu_seconds(server.proc.pid)
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.amqp_confirms",
            "--child",
            str(server.amqp_port),
            "--messages",
            str(args.messages),
            "--window",
            str(args.window),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
        check=False,
    )
    cpu1 = process_cpu_seconds(server.proc.pid)
    if child.returncode:
        return {"error": child.stderr[-2000:]}
    row: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    if cpu0 is not None and cpu1 is not None:
        row["server_cpu_per_msg_us"] = (cpu1 - cpu0) * 1e6 / args.messages
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--body-size", type=int, default=16)
    parser.add_argument("--baseline", type=Path, help="another source tree to measure too")
    parser.add_argument("--child", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(produce(args.child, args.messages, args.window, args.body_size)))
        return
    log_dir = Path(tempfile.mkdtemp(prefix="amqp-confirms-"))
    trees = [("this tree", REPO_ROOT)]
    if args.baseline is not None:
        trees.append(("baseline", args.baseline.resolve()))
    servers = [
        Server.start(label, root, log_dir / f"server-{i}.log")
        for i, (label, root) in enumerate(trees)
    ]
    results: dict[str, list[dict[str, Any]]] = {}
    loads: list[float] = []
    try:
        for n in range(args.rounds):
            for server in servers:
                loads.append(load_average())
                row = run_once(server, args)
                if "error" in row:
                    print(f"round {n + 1} on {server.label}: FAILED: {row['error']}")
                    continue
                results.setdefault(server.label, []).append(row)
                print(
                    f"round {n + 1}: {server.label:<10} producer "
                    f"{row['cpu_per_msg_us']:6.1f} µs/msg, server "
                    f"{row.get('server_cpu_per_msg_us', 0):6.1f} µs/msg, "
                    f"{row['frames_per_msg']:.3f} confirm frames/msg",
                    flush=True,
                )
    finally:
        for server in servers:
            server.stop()
    print(
        f"\n{args.messages:,} messages, window {args.window}, median of {args.rounds} rounds, "
        f"load average {min(loads):.1f}-{max(loads):.1f}"
    )
    print("| tree | pika producer CPU µs/msg | server CPU µs/msg | confirm frames/msg | msgs/s |")
    print("|---|---|---|---|---|")
    for label, rows in results.items():

        def med(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return float(statistics.median(r.get(key, 0.0) for r in rows))

        print(
            f"| {label} | {med('cpu_per_msg_us'):.1f} | {med('server_cpu_per_msg_us'):.1f} | "
            f"{med('frames_per_msg'):.3f} | {med('rate'):,.0f} |"
        )


if __name__ == "__main__":
    main()
