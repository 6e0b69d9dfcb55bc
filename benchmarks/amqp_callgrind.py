"""Broker instructions per message, split by phase: the AMQP port against the native port.

CPU time on a shared machine is noisy; callgrind's instruction counts are
not. This starts ``minibroker serve --port P --amqp-port A`` under
``valgrind --tool=callgrind`` from each source tree given (this checkout, and
``--baseline DIR``), zeroes the counters (``callgrind_control -z``), runs a
W1 case, dumps them (``-d``) and divides by the messages. Cases:

* ``harness``: the benchmark harness's own W1 scenarios, as
  ``benchmarks/amqp_micro.py`` runs them: the native port with one message
  per ``put`` (1,000 unconfirmed in flight) and pika (plain publishes,
  prefetch 2000, multiple-ack every 100). The broker runs about 50x slower
  under callgrind, so its reads carry more messages than on a real machine.
* ``paced``: the same clients and settings, the producer publishing one
  message every ``--interval`` seconds, so that (as on a quiet machine, where
  the broker keeps up) about every read carries one message and every
  delivery is a write of its own: what a read and a write cost shows.

Phases: with ``--phases`` the server is started through this module, which
wraps a few methods of the broker (found by name in either tree) in C
functions of a tiny extension compiled on the spot (``mb_phase_*``), so
callgrind's inclusive cost of each is the cost of that phase:

* ``shell``: ``server.connection.Connection._dispatch``, everything done for
  one chunk of input (the session, and the writes it leads to); the rest of
  the total is the Trio loop: waiting, waking, reading (``loop``);
* ``input``: the session's ``receive_data`` (framing, parsing, routing, and
  for AMQP feeding the consumers);
* ``route``: AMQP ``Channel._route`` / native ``Session._dispatch`` (one
  request, its answer encoded);
* ``put``: the core's ``Queue.put``, the same for both;
* ``deliver``: AMQP ``Consumers.release`` (fetch and encode deliveries) /
  native ``Session.resolve`` (a parked fetch answered);
* ``write``: ``ReadyConnections.flush`` (output taken and written).

The wrappers cost a little themselves, so totals come from runs without
them (the default); ``--phases`` runs give the split, and the chunks of
input the server dispatched per message (the calls of ``shell``). Callgrind
counts no kernel time: system calls cost more than it shows::

    python -m benchmarks.amqp_callgrind [--messages 3000] [--baseline DIR]
        [--cases harness,paced] [--interval 0.004] [--phases]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.config import Counts, RunConfig
from benchmarks.payload import Verifier, expected_checksum, make_bodies
from benchmarks.phase_marks import PHASES, build_marks
from benchmarks.sysinfo import load_average
from benchmarks.targets.base import free_port, stop_process, wait_for
from benchmarks.targets.minibroker import REPO_ROOT


@dataclass
class Server:
    label: str
    proc: subprocess.Popen[bytes]
    port: int
    amqp_port: int
    out: Path

    @classmethod
    def start(cls, label: str, root: Path, work: Path, marks: Path | None) -> Server:
        port, amqp_port = free_port(), free_port()
        out = work / f"callgrind-{label.replace(' ', '-')}.out"
        log = work / f"server-{label.replace(' ', '-')}.log"
        serve = ["serve", "--port", str(port), "--amqp-port", str(amqp_port)]
        if marks is None:
            python = [sys.executable, "-m", "minibroker", *serve]
        else:
            script = Path(__file__).resolve().with_name("phase_marks.py")
            python = [sys.executable, str(script), str(marks), *serve]
        env = {**os.environ, "PYTHONPATH": str(root)}
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *python],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=root,
                env=env,
            )
        server = cls(label, proc, port, amqp_port, out)
        if not wait_for(lambda: "listening on" in log.read_text(errors="replace"), 300):
            server.stop()
            raise SystemExit(f"{label}: the server did not start (see {log})")
        return server

    def stop(self) -> None:
        stop_process(self.proc, timeout=60)

    def counted(self, work: Callable[[], None]) -> tuple[int, dict[str, int]]:
        """Instructions (total, and per marked phase) while ``work`` runs."""
        pid = str(self.proc.pid)
        subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
        work()
        for old in self.out.parent.glob(self.out.name + ".*"):
            old.unlink()
        subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
        dump = max(self.out.parent.glob(self.out.name + ".*"), key=lambda f: f.stat().st_mtime)
        text = dump.read_text()
        total = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
        assert total is not None
        return int(total.group(1)), _phase_costs(dump)


def _phase_costs(dump: Path) -> dict[str, int]:
    """Inclusive instructions of each ``mb_phase_*`` function in a callgrind dump."""
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(dump)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    costs: dict[str, int] = {}
    for line in annotated.splitlines():
        found = re.match(r"\s*([\d,]+) .*:mb_phase_(\w+) ", line)
        if found and found.group(2) in PHASES:
            costs[found.group(2)] = int(found.group(1).replace(",", ""))
    text = dump.read_text()
    ids = dict(re.findall(r"^c?fn=\((\d+)\) mb_phase_(\w+)$", text, re.MULTILINE))
    calls = {name: 0 for name in ids.values()}
    for callee, count in re.findall(r"^cfn=\((\d+)\).*\ncalls=(\d+)", text, re.MULTILINE):
        if callee in ids:
            calls[ids[callee]] += int(count)
    costs["calls:shell"] = calls.get("shell", 0)
    costs["calls:write"] = calls.get("write", 0)
    return costs


# --- the cases ------------------------------------------------------------------------


def _harness(server: Server, port_kind: str, messages: int, log_dir: Path) -> None:
    from benchmarks.amqp_micro import CASES, run_case

    name = "W1 native, one message per put" if port_kind == "native" else "W1 AMQP pika"
    case = next(c for c in CASES if c.name == name)
    counts = Counts(
        queue=messages, fanout=messages, log=1, rr_sequential=1, rr_concurrent=1, rr_warmup=1
    )
    cfg = RunConfig(targets=(), workloads=(), counts=counts, timeout=1200.0)
    expected_checksum(messages, cfg.body_size)
    micro_server: Any = server  # has .port and .amqp_port, all build() reads
    row = run_case(server.proc.pid, case.build(micro_server, cfg, log_dir))
    if isinstance(row, str):
        raise SystemExit(f"{name} on {server.label} failed: {row}")


def _paced_amqp(server: Server, messages: int, interval: float) -> None:
    """pika, the harness's W1 settings, one publish every ``interval`` seconds."""
    import pika

    cfg = RunConfig(targets=(), workloads=(), counts=Counts(1, 1, 1, 1, 1, 1), timeout=1200.0)
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=server.amqp_port,
        credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0,
    )
    queue = f"paced-{time.monotonic_ns()}"
    verifier = Verifier(messages, cfg.body_size)
    consumer = pika.BlockingConnection(params)
    ch = consumer.channel()
    ch.queue_declare(queue)
    ch.basic_qos(prefetch_count=cfg.prefetch)
    unacked = 0

    def on_message(chan: Any, method: Any, _props: Any, body: bytes) -> None:
        nonlocal unacked
        verifier.add(body)
        unacked += 1
        if unacked >= cfg.ack_every or verifier.done:
            chan.basic_ack(method.delivery_tag, multiple=True)
            unacked = 0

    ch.basic_consume(queue, on_message)

    def produce() -> None:
        producer = pika.BlockingConnection(params)
        pch = producer.channel()
        for body in make_bodies(messages, cfg.body_size):
            pch.basic_publish("", queue, body)
            time.sleep(interval)
        producer.close()

    thread = threading.Thread(target=produce)
    thread.start()
    deadline = time.monotonic() + 1200
    while not verifier.done and time.monotonic() < deadline:
        consumer.process_data_events(time_limit=0.1)
    thread.join()
    ch.queue_delete(queue)
    consumer.close()
    if not verifier.done:
        raise SystemExit(f"paced AMQP: {verifier.distinct} of {messages} arrived")


def native_w1(
    server: Server,
    messages: int,
    *,
    batch: int,
    interval: float = 0.0,
    body_size: int = 100,
    prefetch: int = 2000,
    ack_every: int = 100,
) -> None:
    """W1 with the native client against ``server``: one connection putting
    ``batch`` messages per ``put_many`` through ``queue_producer(max_batch=batch)``
    (pausing ``interval`` seconds after each, if any), one iterating
    ``consume(prefetch, ack_every)`` and acking every delivery (the roles of
    benchmarks/targets/minibroker.py). Raises SystemExit unless all arrived."""
    import trio

    import minibroker

    url = f"minibroker://127.0.0.1:{server.port}"
    queue = f"w1-{time.monotonic_ns()}"
    verifier = Verifier(messages, body_size)

    async def consume(mb: Any, ready: trio.Event) -> None:
        async with mb.consume(queue, prefetch=prefetch, ack_every=ack_every) as found:
            ready.set()
            async for delivery in found:
                verifier.add(delivery.body)
                await delivery.ack()
                if verifier.done:
                    break

    async def run() -> None:
        async with minibroker.connect(url) as mb, minibroker.connect(url) as producer_mb:
            await mb.declare_queue(queue)
            ready = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume, mb, ready)
                await ready.wait()
                async with producer_mb.queue_producer(queue, max_batch=batch) as producer:
                    bodies = make_bodies(messages, body_size)
                    for first in range(0, messages, batch):
                        await producer.put_many(bodies[first : first + batch])
                        if interval:
                            await trio.sleep(interval)
            await mb.delete_queue(queue)

    trio.run(run)
    if not verifier.done:
        raise SystemExit(f"native W1: {verifier.distinct} of {messages} arrived")


def _paced_native(server: Server, messages: int, interval: float) -> None:
    """The native client, one ``put`` every ``interval`` seconds; consume as the harness."""
    cfg = RunConfig(targets=(), workloads=(), counts=Counts(1, 1, 1, 1, 1, 1), timeout=1200.0)
    native_w1(
        server,
        messages,
        batch=1,
        interval=interval,
        body_size=cfg.body_size,
        prefetch=cfg.prefetch,
        ack_every=cfg.ack_every,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--baseline", type=Path, help="another source tree to count too")
    parser.add_argument("--cases", default="harness,paced")
    parser.add_argument("--interval", type=float, default=0.004)
    parser.add_argument("--phases", action="store_true", help="mark and split the phases")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="amqp-callgrind-"))
    marks: Path | None = None
    if args.phases:
        marks = work / "marks"
        marks.mkdir()
        build_marks(marks)
    trees = [("this tree", REPO_ROOT)]
    if args.baseline is not None:
        trees.append(("baseline", args.baseline.resolve()))
    servers = [Server.start(label, root, work, marks) for label, root in trees]
    wanted = [c.strip() for c in args.cases.split(",")]
    rows: list[tuple[str, str, str, int, dict[str, int]]] = []
    loads = [load_average()]
    n = args.messages
    try:
        for server in servers:  # warm-up: imports, caches, first connections
            _harness(server, "native", 200, work)
            _harness(server, "amqp", 200, work)
        for case in wanted:
            for port_kind in ("native", "amqp"):
                for server in servers:
                    work_fn: Callable[[], None]
                    if case == "harness":
                        work_fn = lambda s=server, k=port_kind: _harness(s, k, n, work)  # noqa: E731
                    elif port_kind == "native":
                        work_fn = lambda s=server: _paced_native(s, n, args.interval)  # noqa: E731
                    else:
                        work_fn = lambda s=server: _paced_amqp(s, n, args.interval)  # noqa: E731
                    try:
                        total, phases = server.counted(work_fn)
                    except SystemExit as failed:  # one case failed: report the others
                        print(f"{case} {port_kind} {server.label}: {failed}", flush=True)
                        continue
                    loads.append(load_average())
                    rows.append((case, port_kind, server.label, total, phases))
                    print(
                        f"{case:8} {port_kind:6} {server.label:10} {total / n / 1000:8.1f} k "
                        f"instructions/msg, {phases.get('calls:shell', 0) / n:.2f} chunks/msg",
                        flush=True,
                    )
    finally:
        for server in servers:
            server.stop()
    print(
        f"\n{n:,} messages of 100 bytes per case; load average {min(loads):.1f}-{max(loads):.1f}"
        f"; paced: one publish every {args.interval * 1000:g} ms"
    )
    head = "| case | port | tree | k instructions/msg |"
    if args.phases:
        head += " chunks/msg | loop | shell | input | route | put | deliver | write |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for case, port_kind, label, total, phases in rows:
        line = f"| {case} | {port_kind} | {label} | {total / n / 1000:.1f} |"
        if args.phases:
            line += f" {phases.get('calls:shell', 0) / n:.2f} |"
            split = {"loop": total - phases.get("shell", 0), **phases}
            line += "".join(f" {split.get(p, 0) / n / 1000:.1f} |" for p in ("loop", *PHASES))
        print(line)


if __name__ == "__main__":
    main()
