"""Send, receive and delete through boto3: minibroker's SQS endpoint against moto's server.

Not a test; the quick measurement behind docs/sqs.md's performance section
(issue 21's goals: at least 10x moto's server, and the SQS port no more than
3x the native port's broker CPU per message). Run::

    python benchmarks/sqs_micro.py [--messages 2000] [--batch 10]

It starts ``minibroker serve --sqs-port`` and ``moto_server`` (from
``moto[server]``; skipped with a message if absent) as separate processes on
free ports, and runs the same workload against each from this process with
one boto3 client:

* **send**: ``send_message`` one message at a time (100-byte bodies);
* **receive + delete**: ``receive_message`` ``--batch`` at a time and
  ``delete_message_batch`` for what came, until the queue is empty; every
  body is checked.

It prints messages/s for each phase and the server process's CPU
microseconds per message (from /proc, Linux). For the native comparison it
runs the same pattern through the blocking msgpack client on the same
minibroker process (``put`` one at a time; ``fetch`` ``--batch`` and ``ack``
the batch), so both figures include their protocol's parsing.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.broker_process import BrokerProcess

_SQS_LINE = re.compile(r"SQS endpoint on https?://\S+:(\d+)")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    name: str
    messages: int
    seconds: float
    server_cpu: float

    def row(self, target: str) -> str:
        rate = self.messages / self.seconds
        cpu_us = self.server_cpu / self.messages * 1e6
        return f"| {target} | {self.name} | {rate:,.0f} | {cpu_us:,.0f} |"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def measure(name: str, pid: int, messages: int, work: Callable[[], None]) -> Phase:
    cpu = cpu_seconds(pid)
    started = time.perf_counter()
    work()
    return Phase(name, messages, time.perf_counter() - started, cpu_seconds(pid) - cpu)


def body(i: int) -> str:
    return f"{i:08d}".ljust(100, "x")


def sqs_phases(endpoint: str, pid: int, messages: int, batch: int) -> list[Phase]:
    import boto3

    sqs = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    url = sqs.create_queue(QueueName="bench")["QueueUrl"]
    sqs.purge_queue(QueueUrl=url)

    def send() -> None:
        for i in range(messages):
            sqs.send_message(QueueUrl=url, MessageBody=body(i))

    def receive_delete() -> None:
        seen: set[str] = set()
        while len(seen) < messages:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=batch).get("Messages", [])
            if not got:
                raise RuntimeError(f"queue empty after {len(seen)} of {messages} messages")
            seen.update(m["Body"] for m in got)
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(got)
                ],
            )
        assert seen == {body(i) for i in range(messages)}

    return [
        measure("send (one per call)", pid, messages, send),
        measure(f"receive {batch} + delete batch", pid, messages, receive_delete),
    ]


def native_phases(url: str, pid: int, messages: int, batch: int) -> list[Phase]:
    import minibroker

    with minibroker.connect_sync(url) as mb:
        mb.declare_queue("native-bench")

        def put() -> None:
            for i in range(messages):
                mb.put("native-bench", body(i).encode())

        def fetch_ack() -> None:
            seen = 0
            while seen < messages:
                got = mb.fetch("native-bench", max_messages=batch)
                if not got:
                    raise RuntimeError(f"queue empty after {seen} of {messages} messages")
                seen += len(got)
                mb.ack(got)

        return [
            measure("put (one per call)", pid, messages, put),
            measure(f"fetch {batch} + ack batch", pid, messages, fetch_ack),
        ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def moto_process(*, skip: bool = False) -> Iterator[tuple[str, int] | None]:
    if skip:
        yield None
        return
    port = free_port()
    try:
        proc = subprocess.Popen(
            ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        yield None
        return
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def sqs_port_of(broker: BrokerProcess) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in list(broker.log):
            found = _SQS_LINE.search(line)
            if found:
                return int(found.group(1))
        threading.Event().wait(0.05)
    raise RuntimeError("no SQS endpoint line in the server's log")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--no-moto", action="store_true", help="skip moto_server (it is slow)")
    args = parser.parse_args(argv)
    rows: list[str] = []
    with BrokerProcess.start(None, "--sqs-port", "0") as broker:
        endpoint = f"http://127.0.0.1:{sqs_port_of(broker)}"
        ours = sqs_phases(endpoint, broker.pid, args.messages, args.batch)
        native = native_phases(broker.url, broker.pid, args.messages, args.batch)
    rows += [p.row("minibroker SQS") for p in ours]
    rows += [p.row("minibroker native") for p in native]
    theirs: list[Phase] = []
    with moto_process(skip=args.no_moto) as moto:
        if moto is None:
            print("moto_server not found (pip install 'moto[server]'): no moto figures")
        else:
            theirs = sqs_phases(moto[0], moto[1], args.messages, args.batch)
            rows += [p.row("moto_server") for p in theirs]
    print(f"{args.messages} messages of 100 bytes, one boto3 client, batches of {args.batch}\n")
    print("| target | phase | messages/s | server CPU µs/msg |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    for mine, native_phase in zip(ours, native, strict=True):
        ratio = (mine.server_cpu / mine.messages) / (
            native_phase.server_cpu / native_phase.messages
        )
        print(
            f"\n{mine.name}: SQS port costs {ratio:.1f}x the native port's server CPU per message"
        )
    for mine, other in zip(ours, theirs, strict=False):
        speed = (mine.messages / mine.seconds) / (other.messages / other.seconds)
        print(f"{mine.name}: {speed:.1f}x moto_server's messages/s")


if __name__ == "__main__":
    main()
