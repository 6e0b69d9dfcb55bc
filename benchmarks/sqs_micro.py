"""Send, receive and delete through boto3: minibroker's SQS endpoint against moto's server.

Not a test; the measurement behind docs/sqs.md's performance section (issue
21's goals: at least 10x moto's server, and the SQS port no more than 3x
the native port's cost per message, HTTP parsing included). Run::

    python benchmarks/sqs_micro.py [--messages 2000] [--batch 10] [--no-moto]
    python benchmarks/sqs_micro.py --callgrind [--messages 300]

It starts ``minibroker serve --sqs-port`` and ``moto_server`` (from
``moto[server]``; skipped with a message if absent) as separate processes on
free ports, and runs the same workload against each from this process with
one boto3 client:

* **send**: ``send_message`` one message at a time (100-byte bodies);
* **receive + delete**: ``receive_message`` ``--batch`` at a time and
  ``delete_message_batch`` for what came, until the queue is empty; every
  body is checked.

It prints messages/s for each phase, the server process's CPU microseconds
per message (from /proc, Linux) and this process's (the client's). For the
native comparison it runs the same pattern through the blocking msgpack
client on the same minibroker process (``put`` one at a time; ``fetch``
``--batch`` and ``ack`` the batch), once as fast as it goes and once paced
to the rates the SQS phases reached, so both protocols are compared with the
broker woken as often. ``--callgrind`` counts the broker's instructions per
message instead (valgrind), which a loaded machine does not disturb.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.broker_process import BrokerProcess

_SQS_LINE = re.compile(r"SQS endpoint on https?://\S+:(\d+)")
_TICKS = os.sysconf("SC_CLK_TCK")
_RUNTIME = re.compile(r"se\.sum_exec_runtime\s*:\s*([0-9.]+)")


@dataclass
class Phase:
    name: str
    messages: int
    seconds: float
    server_cpu: float
    #: CPU of this process, the client (boto3 or the native client), in the phase.
    client_cpu: float = 0.0

    def row(self, target: str) -> str:
        rate = self.messages / self.seconds
        cpu_us = self.server_cpu / self.messages * 1e6
        client_us = self.client_cpu / self.messages * 1e6
        return f"| {target} | {self.name} | {rate:,.0f} | {cpu_us:,.0f} | {client_us:,.0f} |"


#: Runs one phase's work and says what it cost: (name, server pid, messages, work).
Measure = Callable[[str, int, int, Callable[[], None]], Phase]


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's live threads, from the scheduler's
    ``se.sum_exec_runtime`` (/proc/PID/task/*/sched, in ms to the ns): /proc/PID/stat
    counts 10 ms ticks, too coarse for a phase of a few thousand 50 µs requests.
    Threads that ended are not counted: right for the broker (one thread),
    wrong for a server with a thread per request (``stat_cpu_seconds``).
    Falls back to /proc/PID/stat where the kernel does not show it."""
    total = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found = _RUNTIME.search((task / "sched").read_text())
            if found is None:
                raise ValueError("no se.sum_exec_runtime")
            total += float(found.group(1)) / 1e3
    except (OSError, ValueError):
        return stat_cpu_seconds(pid)
    return total


def stat_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, ended threads included, from /proc/PID/stat
    (10 ms ticks: fine for moto's server, which spends milliseconds a message)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def measure_cpu(
    name: str,
    pid: int,
    messages: int,
    work: Callable[[], None],
    cpu_seconds: Callable[[int], float] = cpu_seconds,
) -> Phase:
    cpu = cpu_seconds(pid)
    client = time.process_time()
    started = time.perf_counter()
    work()
    return Phase(
        name,
        messages,
        time.perf_counter() - started,
        cpu_seconds(pid) - cpu,
        time.process_time() - client,
    )


def body(i: int) -> str:
    return f"{i:08d}".ljust(100, "x")


def sqs_phases(
    endpoint: str, pid: int, messages: int, batch: int, measure: Measure = measure_cpu
) -> list[Phase]:
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


def native_phases(
    url: str,
    pid: int,
    messages: int,
    batch: int,
    rates: list[float] | None = None,
    measure: Measure = measure_cpu,
) -> list[Phase]:
    """Put one per call, then fetch ``batch`` and ack them; with ``rates``
    (messages/s per phase) paced to those rates, so the broker handles its
    requests as often as it handled the SQS ones: a process woken 100 times
    a second on a busy machine pays more per request (cold caches) than one
    kept busy, and comparing the two would measure that, not the protocols."""
    import minibroker

    put_gap, fetch_gap = (1 / rates[0], batch / rates[1]) if rates else (0.0, 0.0)
    suffix = ", paced to the SQS rate" if rates else ""

    def pace(started: float, n: int, gap: float) -> None:
        if gap:
            delay = started + n * gap - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    with minibroker.connect_sync(url) as mb:
        mb.declare_queue("native-bench")

        def put() -> None:
            started = time.perf_counter()
            for i in range(messages):
                mb.put("native-bench", body(i).encode())
                pace(started, i + 1, put_gap)

        def fetch_ack() -> None:
            seen = calls = 0
            started = time.perf_counter()
            while seen < messages:
                got = mb.fetch("native-bench", max_messages=batch)
                if not got:
                    raise RuntimeError(f"queue empty after {seen} of {messages} messages")
                seen += len(got)
                mb.ack(got)
                calls += 1
                pace(started, calls, fetch_gap)

        return [
            measure(f"put (one per call{suffix})", pid, messages, put),
            measure(f"fetch {batch} + ack batch{suffix}", pid, messages, fetch_ack),
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
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count the broker's instructions per message under valgrind instead (no moto)",
    )
    args = parser.parse_args(argv)
    if args.callgrind:
        callgrind_main(args.messages, args.batch)
        return
    rows: list[str] = []
    with BrokerProcess.start(None, "--sqs-port", "0") as broker:
        endpoint = f"http://127.0.0.1:{sqs_port_of(broker)}"
        ours = sqs_phases(endpoint, broker.pid, args.messages, args.batch)
        native = native_phases(broker.url, broker.pid, args.messages, args.batch)
        rates = [p.messages / p.seconds for p in ours]
        paced = native_phases(broker.url, broker.pid, args.messages, args.batch, rates)
    rows += [p.row("minibroker SQS") for p in ours]
    rows += [p.row("minibroker native") for p in native + paced]
    theirs: list[Phase] = []
    with moto_process(skip=args.no_moto) as moto:
        if moto is None:
            print("no moto figures (--no-moto, or pip install 'moto[server]')")
        else:
            # werkzeug serves each request on a thread of its own: count ended ones too.
            theirs = sqs_phases(
                moto[0],
                moto[1],
                args.messages,
                args.batch,
                partial(measure_cpu, cpu_seconds=stat_cpu_seconds),
            )
            rows += [p.row("moto_server") for p in theirs]
    print(f"{args.messages} messages of 100 bytes, one boto3 client, batches of {args.batch}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| target | phase | messages/s | server CPU µs/msg | client CPU µs/msg |")
    print("|---|---|---|---|---|")
    print("\n".join(rows) + "\n")
    for mine, fast, slow in zip(ours, native, paced, strict=True):
        print(
            f"{mine.name}: the SQS port's server CPU per message is "
            f"{_per_message(mine) / _per_message(slow):.1f}x the native port's at the same "
            f"request rate ({_per_message(mine) / _per_message(fast):.1f}x the native port "
            "unpaced)"
        )
    for mine, other in zip(ours, theirs, strict=False):
        speed = (mine.messages / mine.seconds) / (other.messages / other.seconds)
        cpu = _per_message(other) / _per_message(mine)
        print(f"{mine.name}: {speed:.1f}x moto_server's messages/s, 1/{cpu:.0f} of its server CPU")
    if theirs:
        # The whole life of a message: sent, received, deleted.
        ours_s = sum(p.seconds / p.messages for p in ours)
        theirs_s = sum(p.seconds / p.messages for p in theirs)
        client_s = sum(p.client_cpu / p.messages for p in ours)
        print(
            f"send + receive + delete: {ours_s * 1e3:.2f} ms a message against "
            f"{theirs_s * 1e3:.2f} ms on moto_server ({theirs_s / ours_s:.1f}x); boto3 "
            f"itself used {client_s * 1e3:.2f} ms of client CPU a message"
        )


def _per_message(phase: Phase) -> float:
    return phase.server_cpu / phase.messages


def callgrind_main(messages: int, batch: int) -> None:
    """The broker's instructions per message in each phase, counted by callgrind:
    deterministic, so unlike CPU time on a shared machine they compare across
    runs and between protocols. (Counters are zeroed before a phase and dumped
    after it with ``callgrind_control``; the broker runs about 50x slower.)"""
    out = Path(tempfile.mkdtemp()) / "callgrind.out"
    proc = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "minibroker",
            "serve",
            "--port",
            "0",
            "--sqs-port",
            "0",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    ports: dict[str, int] = {}
    for line in proc.stderr:
        if found := _SQS_LINE.search(line):
            ports["sqs"] = int(found.group(1))
        if found := re.search(r"minibroker \S+ listening on \S+:(\d+)", line):
            ports["native"] = int(found.group(1))
            break
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    counts: list[tuple[str, float]] = []

    def counted(name: str, pid: int, n: int, work: Callable[[], None]) -> Phase:
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        work()
        subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
        newest = max(out.parent.iterdir(), key=lambda f: f.stat().st_mtime)
        total = re.search(r"^(?:summary|totals): (\d+)", newest.read_text(), re.MULTILINE)
        assert total is not None
        counts.append((name, int(total.group(1)) / n))
        return Phase(name, n, 1.0, 0.0)

    try:
        sqs_phases(f"http://127.0.0.1:{ports['sqs']}", proc.pid, messages, batch, counted)
        native_phases(
            f"minibroker://127.0.0.1:{ports['native']}", proc.pid, messages, batch, None, counted
        )
    finally:
        proc.terminate()
        proc.wait(120)
    print(f"{messages} messages of 100 bytes, one client, batches of {batch}: broker instructions")
    print("\n| target | phase | instructions/msg |\n|---|---|---|")
    for (name, count), target in zip(counts, ["SQS", "SQS", "native", "native"], strict=True):
        print(f"| minibroker {target} | {name} | {count / 1000:,.0f} k |")
    for (name, mine), (_, native) in zip(counts[:2], counts[2:], strict=True):
        print(f"{name}: {mine / native:.1f}x the native port's instructions")


if __name__ == "__main__":
    main()
