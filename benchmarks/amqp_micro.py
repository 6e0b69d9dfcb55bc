"""Broker CPU per message: the AMQP port against the native port, and one tree against another.

Not part of the comparison harness; the quick loop for working on the AMQP
front end (issue 16). It starts ``minibroker serve --port P --amqp-port A``
from each source tree given (this checkout, and ``--baseline DIR``, say an
unpacked ``git archive`` of an older commit), then runs the harness's own
scenarios and role functions against each server in turn, round after round,
and reports the server's CPU time per message (``/proc``, user + system),
which the load of a shared machine distorts far less than wall-clock rates:

* native W1, as the harness runs it (``put_many`` batches of ``--batch``), and
  with one message per ``put`` (1000 unconfirmed in flight: the per-message
  work an AMQP publish is);
* W1 through pika and aio-pika (plain publishes; prefetch and multiple acks);
* W2 through pika and the native client (per published message, 4 subscribers);
* W4 through pika and the native client (per request: a request and its reply).

Each row also gives the clients' CPU per message and how busy they were (CPU
÷ wall time; near 100% means the client, not the broker, set the pace)::

    python -m benchmarks.amqp_micro [--messages 20000] [--requests 1000]
        [--rounds 2] [--baseline DIR] [--only w1,w2,w4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.cli import role_cpu
from benchmarks.config import Counts, RunConfig
from benchmarks.payload import expected_checksum
from benchmarks.runner import PhaseOutcome, Reports, run_phase
from benchmarks.sysinfo import load_average
from benchmarks.targets.base import free_port, process_cpu_seconds, stop_process, wait_for
from benchmarks.targets.minibroker import REPO_ROOT, MinibrokerTarget, server_command
from benchmarks.targets.rabbitmq import RabbitMQTarget
from benchmarks.workloads import BUILDERS, Impl, Scenario


@dataclass
class Server:
    """One ``minibroker serve`` with both ports, started from a given source tree."""

    label: str
    root: Path
    proc: subprocess.Popen[bytes]
    port: int
    amqp_port: int

    @classmethod
    def start(cls, label: str, root: Path, log: Path) -> Server:
        port, amqp_port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(root)}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                server_command(port, amqp_port=amqp_port),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=root,
                env=env,
            )
        server = cls(label, root, proc, port, amqp_port)
        if not wait_for(lambda: "listening on" in log.read_text(errors="replace"), 30):
            server.stop()
            raise SystemExit(f"{label}: the server did not start (see {log})")
        return server

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class Case:
    """A scenario to run against each server: its name and how to build it."""

    name: str
    build: Callable[[Server, RunConfig, Path], Scenario]


def _native(workload: str, cfg_change: dict[str, Any], variant: str | None = None) -> Any:
    def build(server: Server, cfg: RunConfig, log_dir: Path) -> Scenario:
        run_cfg = replace(cfg, **cfg_change)
        target = MinibrokerTarget(run_cfg, log_dir)
        target.port = server.port
        impl = target.impls(workload)[0]
        if variant is not None:
            impl = replace(impl, variants=(variant,))
        return BUILDERS[workload]("native", impl, run_cfg)[0]

    return build


def _amqp(workload: str, client: str, variant: str | None = None) -> Any:
    def build(server: Server, cfg: RunConfig, log_dir: Path) -> Scenario:
        target = RabbitMQTarget(cfg, log_dir)
        target.port = server.amqp_port
        impl: Impl = next(i for i in target.impls(workload) if i.client.startswith(client))
        if variant is not None:
            impl = replace(impl, variants=(variant,))
        return BUILDERS[workload]("amqp", impl, cfg)[0]

    return build


CASES = [
    Case("W1 native, put_many batches (harness)", _native("w1", {}, "plain")),
    Case("W1 native, one message per put", _native("w1", {"batch": 1}, "confirmed")),
    Case("W1 AMQP pika", _amqp("w1", "pika", "plain")),
    Case("W1 AMQP aio-pika", _amqp("w1", "aio-pika", "plain")),
    Case("W2 native, publish_many batches", _native("w2", {})),
    Case("W2 AMQP pika", _amqp("w2", "pika")),
    Case("W4 native", _native("w4", {})),
    Case("W4 AMQP pika", _amqp("w4", "pika")),
]


def run_case(pid: int, scenario: Scenario) -> dict[str, float] | str:
    """Run one scenario against the server process ``pid``; its CPU per message
    and rate, or why it failed."""
    cpu0 = process_cpu_seconds(pid)
    outcomes: list[PhaseOutcome] = []
    reports: Reports = {}
    for build in scenario.phases:
        outcome = run_phase(build(reports))
        outcomes.append(outcome)
        reports.update(outcome.reports)
    cpu1 = process_cpu_seconds(pid)
    measured = scenario.evaluate(outcomes)
    if not measured or not measured[0].ok or cpu0 is None or cpu1 is None:
        return measured[0].detail if measured else "no measurement"
    first = measured[0]
    row = {
        "broker_cpu_per_msg_us": (cpu1 - cpu0) * 1e6 / scenario.count,
        "value": first.value or 0.0,
    }
    total = 0.0
    for outcome in outcomes:
        row.update(role_cpu(outcome, scenario.count))
        total += sum(float(r.get("cpu_s") or 0.0) for r in outcome.reports.values())
    #: All client processes together (W2's subscribers summed, not their busiest).
    row["clients_total_us"] = total * 1e6 / scenario.count
    return row


def _client_cell(rows: list[dict[str, float]], role: str) -> str:
    cpu = statistics.median(r[f"{role}_cpu_per_msg_us"] for r in rows)
    busy = statistics.median(r[f"{role}_busy"] for r in rows)
    return f"{role} {cpu:.1f} ({busy:.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", type=Path, help="another source tree to measure too")
    parser.add_argument("--only", default="w1,w2,w4", help="workloads, e.g. w1,w4")
    args = parser.parse_args()

    counts = Counts(
        queue=args.messages,
        fanout=args.messages,
        log=1,
        rr_sequential=args.requests,
        rr_concurrent=args.requests,
        rr_warmup=max(10, args.requests // 10),
    )
    cfg = RunConfig(targets=(), workloads=(), counts=counts, timeout=300.0)
    expected_checksum(args.messages, cfg.body_size)
    wanted = {w.strip().upper() for w in args.only.split(",")}
    cases = [c for c in CASES if c.name.split()[0] in wanted]
    log_dir = Path(tempfile.mkdtemp(prefix="amqp-micro-"))
    trees = [("this tree", REPO_ROOT)]
    if args.baseline is not None:
        trees.append(("baseline", args.baseline.resolve()))
    servers = [
        Server.start(label, root, log_dir / f"server-{i}.log")
        for i, (label, root) in enumerate(trees)
    ]
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    loads: list[float] = []
    try:
        for n in range(args.rounds):
            for case in cases:
                for server in servers:
                    loads.append(load_average())
                    row = run_case(server.proc.pid, case.build(server, cfg, log_dir))
                    if isinstance(row, str):
                        print(f"round {n + 1}: {case.name} on {server.label}: FAILED: {row}")
                        continue
                    results.setdefault((case.name, server.label), []).append(row)
                    print(
                        f"round {n + 1}: {case.name:<40} {server.label:<10} broker "
                        f"{row['broker_cpu_per_msg_us']:7.1f} µs/msg",
                        flush=True,
                    )
    finally:
        for server in servers:
            server.stop()
    print(
        f"\n{args.messages:,} messages (W1, W2), {args.requests:,}+{args.requests:,} requests "
        f"(W4); median of {args.rounds} rounds; load average {min(loads):.1f}-{max(loads):.1f}"
    )
    print("| case | tree | broker CPU µs/msg | clients: CPU µs/msg (busy) | msgs/s or p50 µs |")
    print("|---|---|---|---|---|")
    for case in cases:
        for server in servers:
            rows = results.get((case.name, server.label))
            if not rows:
                continue
            broker = statistics.median(r["broker_cpu_per_msg_us"] for r in rows)
            clients = ", ".join(
                _client_cell(rows, key[: -len("_cpu_per_msg_us")])
                for key in rows[0]
                if key.endswith("_cpu_per_msg_us") and not key.startswith("broker")
            )
            value = statistics.median(r["value"] for r in rows)
            print(f"| {case.name} | {server.label} | {broker:.1f} | {clients} | {value:,.0f} |")


if __name__ == "__main__":
    main()
