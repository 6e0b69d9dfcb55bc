"""How fast can pika and aio-pika go at all? The clients' ceiling beside RabbitMQ and minibroker.

Issue 16 asks for the same client to be 3x faster against minibroker than
against RabbitMQ on W1 and W2. Whether any broker could give that is a
property of the client: this runs the harness's own W1 and W2 scenarios
(the role functions of benchmarks/targets/rabbitmq.py, as the harness drives
them) against three servers in the same rounds, one after the other:

* ``null``: benchmarks/amqp_null.py, a scripted responder that does no
  broker work (no routing beyond a name lookup, no prefetch, no queue), so
  its rate is the most the client reaches on this machine;
* ``rabbitmq``: the RabbitMQ on 127.0.0.1:5672;
* ``minibroker``: ``minibroker serve --amqp-port`` from this tree.

For each it reports the rate (the scenario's own measure), each client
role's CPU per message and busy share (CPU ÷ wall time), and the server's
CPU per message (``/proc``). Wall-clock rates on a loaded 2-core machine say
more about the load than about the broker, so the ratios to RabbitMQ are
computed from CPU per message, under two models of the machine. For the
ceiling row, the server's CPU counts as 0 (a broker that costs nothing) and
each client's as the least it cost against any of the three servers (a
server that answers at once, as the null one does, wakes a client more often,
and the wakeups cost it CPU):

* ``CPU-bound`` (all processes share the cores, which are always busy, as
  here): the rate is inversely proportional to the CPU all processes spend
  per message, clients and server together;
* ``a core each`` (a quiet machine with a core per process): the busiest
  process sets the rate, so it is inversely proportional to the largest
  CPU per message among them.

The null row's ratios are then the best any broker could do with that client
as the harness drives it::

    python -m benchmarks.amqp_ceiling [--messages 20000] [--rounds 3] [--only w1,w2]
        [--clients pika,aio-pika]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.amqp_micro import Server, run_case
from benchmarks.config import RABBITMQ_PORT, Counts, RunConfig
from benchmarks.sysinfo import load_average
from benchmarks.targets.base import listener_pid, stop_process, wait_for
from benchmarks.targets.minibroker import REPO_ROOT
from benchmarks.targets.rabbitmq import RabbitMQTarget
from benchmarks.workloads import BUILDERS, Impl, Scenario

CASES = [("w1", "pika"), ("w1", "aio-pika"), ("w2", "pika"), ("w2", "aio-pika")]


@dataclass
class Endpoint:
    """An AMQP server to measure: where it listens and which process to read CPU from."""

    label: str
    port: int
    pid: int


def start_null(log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start benchmarks/amqp_null.py; its process and port."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.amqp_null"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
    if not wait_for(lambda: "listening on" in log.read_text(errors="replace"), 30):
        stop_process(proc)
        raise SystemExit(f"the null responder did not start (see {log})")
    port = int(log.read_text().split("listening on")[1].split()[0])
    return proc, port


def scenario(workload: str, client: str, port: int, cfg: RunConfig, log_dir: Path) -> Scenario:
    """The harness's scenario for ``client`` on ``workload``, pointed at ``port``."""
    target = RabbitMQTarget(cfg, log_dir)
    target.port = port
    impl: Impl = next(i for i in target.impls(workload) if i.client.startswith(client))
    if workload == "w1":
        impl = replace(impl, variants=("plain",))
    return BUILDERS[workload]("amqp", impl, cfg)[0]


def _roles(row: dict[str, float]) -> list[str]:
    """The client roles of a result row (the server's own CPU is ``broker_*``)."""
    return [
        k[: -len("_cpu_per_msg_us")]
        for k in row
        if k.endswith("_cpu_per_msg_us") and not k.startswith("broker")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="w1,w2")
    parser.add_argument("--clients", default="pika,aio-pika")
    args = parser.parse_args()
    counts = Counts(
        queue=args.messages,
        fanout=args.messages,
        log=1,
        rr_sequential=1,
        rr_concurrent=1,
        rr_warmup=1,
    )
    cfg = RunConfig(targets=(), workloads=(), counts=counts, timeout=300.0)
    wanted = {w.strip().lower() for w in args.only.split(",")}
    clients = {c.strip() for c in args.clients.split(",")}
    cases = [c for c in CASES if c[0] in wanted and c[1] in clients]
    log_dir = Path(tempfile.mkdtemp(prefix="amqp-ceiling-"))
    null_proc, null_port = start_null(log_dir / "null.log")
    server = Server.start("minibroker", REPO_ROOT, log_dir / "minibroker.log")
    rabbit_pid = listener_pid(RABBITMQ_PORT)
    endpoints = [
        Endpoint("null", null_port, null_proc.pid),
        Endpoint("minibroker", server.amqp_port, server.proc.pid),
    ]
    if rabbit_pid is not None:
        endpoints.insert(1, Endpoint("rabbitmq", RABBITMQ_PORT, rabbit_pid))
    else:
        print("no RabbitMQ on 127.0.0.1:5672: the ratios to it are left out")
    results: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    loads: list[float] = []
    try:
        for n in range(args.rounds):
            for workload, client in cases:
                for endpoint in endpoints:
                    loads.append(load_average())
                    built = scenario(workload, client, endpoint.port, cfg, log_dir)
                    row = run_case(endpoint.pid, built)
                    if isinstance(row, str):
                        print(f"round {n + 1}: {workload} {client} {endpoint.label}: FAILED {row}")
                        continue
                    results.setdefault((workload, client, endpoint.label), []).append(row)
                    print(
                        f"round {n + 1}: {workload} {client:<8} {endpoint.label:<10} "
                        f"{row['value']:9,.0f} msg/s, server "
                        f"{row['broker_cpu_per_msg_us']:6.1f} µs/msg, clients "
                        + ", ".join(
                            f"{r} {row[f'{r}_cpu_per_msg_us']:.1f} µs ({row[f'{r}_busy']:.0%})"
                            for r in _roles(row)
                        ),
                        flush=True,
                    )
    finally:
        stop_process(null_proc)
        server.stop()
    saved = log_dir / "results.json"
    saved.write_text(json.dumps([[list(k), v] for k, v in results.items()]))
    print(f"results: {saved}")
    report(results, cases, endpoints, args, loads)


def report(
    results: dict[tuple[str, str, str], list[dict[str, float]]],
    cases: list[tuple[str, str]],
    endpoints: list[Endpoint],
    args: Any,
    loads: list[float],
) -> None:
    """The table: measured rates, CPU per message, and the two bounds on the ratio."""

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(
        f"\n{args.messages:,} messages per run, median of {args.rounds} rounds, "
        f"load average {min(loads):.1f}-{max(loads):.1f}"
    )
    print(
        "| case | server | msg/s (wall) | server CPU µs/msg | clients CPU µs/msg (busy) "
        "| all clients µs/msg | ÷ RabbitMQ: CPU-bound | ÷ RabbitMQ: a core each |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for workload, client in cases:
        rabbit = results.get((workload, client, "rabbitmq"))
        measured = [rows for e in endpoints if (rows := results.get((workload, client, e.label)))]
        for endpoint in endpoints:
            rows = results.get((workload, client, endpoint.label))
            if not rows:
                continue
            roles = _roles(rows[0])
            per_role = {r: med(rows, f"{r}_cpu_per_msg_us") for r in roles}
            server = med(rows, "broker_cpu_per_msg_us")
            clients_total = med(rows, "clients_total_us")
            if endpoint.label == "null":
                # The ceiling: a broker that costs nothing, and the clients at
                # the least they cost against any of the servers (a server that
                # answers at once wakes them more often, which costs them more).
                server = 0.0
                clients_total = min(med(r, "clients_total_us") for r in measured)
                per_role = {r: min(med(m, f"{r}_cpu_per_msg_us") for m in measured) for r in roles}
            total = clients_total + server
            slowest = max([*per_role.values(), server])
            shared = each = "-"
            if rabbit:
                rabbit_roles = {r: med(rabbit, f"{r}_cpu_per_msg_us") for r in _roles(rabbit[0])}
                rabbit_server = med(rabbit, "broker_cpu_per_msg_us")
                rabbit_total = med(rabbit, "clients_total_us") + rabbit_server
                rabbit_slowest = max([*rabbit_roles.values(), rabbit_server])
                shared = f"{rabbit_total / total:.2f}x"
                each = f"{rabbit_slowest / slowest:.2f}x"
            clients = ", ".join(
                f"{r} {med(rows, f'{r}_cpu_per_msg_us'):.1f} ({med(rows, f'{r}_busy'):.0%})"
                for r in roles
            )
            label = endpoint.label
            if label == "null":
                label = "ceiling (null; server 0, clients at their least)"
            print(
                f"| {workload.upper()} {client} | {label} | {med(rows, 'value'):,.0f} | "
                f"{med(rows, 'broker_cpu_per_msg_us'):.1f} | {clients} | "
                f"{med(rows, 'clients_total_us'):.1f} | {shared} | {each} |"
            )


if __name__ == "__main__":
    main()
