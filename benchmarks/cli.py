"""``python -m benchmarks``: run workloads against targets, write a report.

Examples::

    python -m benchmarks                                  # everything reachable
    python -m benchmarks --targets rabbitmq,nats --workloads w2,w4
    python -m benchmarks --quick                          # smoke run, minibroker only
    python -m benchmarks.render_docs benchmarks/results/<run>/results.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.config import ALL_TARGETS, ALL_WORKLOADS, FULL, QUICK, RunConfig
from benchmarks.payload import MIN_BODY_SIZE, expected_checksum
from benchmarks.profiling import maybe_profile, profile_path, py_spy
from benchmarks.results import METRICS, Measurement, RunResults
from benchmarks.runner import PhaseOutcome, Reports, run_phase
from benchmarks.sysinfo import load_average
from benchmarks.targets.base import Target, process_cpu_seconds
from benchmarks.workloads import BUILDERS, Scenario

RESULTS_ROOT = Path(__file__).resolve().parent / "results"
MAX_LOAD_WAIT = 300.0


def _parse_list(value: str, choices: Sequence[str], what: str) -> tuple[str, ...]:
    items = tuple(x.strip().lower() for x in value.split(",") if x.strip())
    unknown = [x for x in items if x not in choices]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown)}; choose from {', '.join(choices)}"
        )
    return items


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark minibroker against RabbitMQ, a Kafka-protocol broker (tansu) "
        "and NATS on this machine. Producers and consumers run in separate processes and "
        "every message is counted and checksummed.",
    )
    parser.add_argument(
        "--targets",
        type=lambda v: _parse_list(v, ALL_TARGETS, "target"),
        default=None,
        help=f"comma-separated, from {','.join(ALL_TARGETS)} (default: all; with --quick: "
        "minibroker)",
    )
    parser.add_argument(
        "--workloads",
        type=lambda v: _parse_list(v, ALL_WORKLOADS, "workload"),
        default=ALL_WORKLOADS,
        help=f"comma-separated, from {','.join(ALL_WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--count",
        type=int,
        default=None,
        help=f"messages per run for W1/W2/W3 (default {FULL.queue:,}/{FULL.fanout:,}/"
        f"{FULL.log:,}); W4 uses --requests",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help=f"W4 sequential requests (default {FULL.rr_sequential:,}); the concurrent part "
        "sends 4x as many",
    )
    parser.add_argument("--body-size", type=int, default=100, help="body bytes (default 100)")
    parser.add_argument(
        "--quick", action="store_true", help="small counts, minibroker only unless --targets"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default benchmarks/results/<time>/)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per phase (default 180; quick 60)"
    )
    parser.add_argument(
        "--fsync",
        choices=("always", "batch", "never"),
        default=None,
        help="passed to `minibroker serve --fsync` for minibroker-durable (default: its own)",
    )
    parser.add_argument(
        "--max-load",
        type=float,
        default=None,
        help="before each scenario, wait (up to 5 min) for the 1-minute load average to fall "
        "below this; the load at each start is recorded either way",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each scenario N times and report the median (any failed run fails the row)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record a py-spy flame graph of the minibroker server for each scenario "
        "(<out>/profiles/; needs py-spy)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    if not MIN_BODY_SIZE <= args.body_size <= 1_000_000:
        raise SystemExit(f"--body-size must be between {MIN_BODY_SIZE} and 1000000")
    counts = QUICK if args.quick else FULL
    if args.count is not None:
        if args.count < 1:
            raise SystemExit("--count must be positive")
        counts = replace(counts, queue=args.count, fanout=args.count, log=args.count)
    if args.requests is not None:
        if args.requests < 1:
            raise SystemExit("--requests must be positive")
        counts = replace(counts, rr_sequential=args.requests, rr_concurrent=4 * args.requests)
    targets = args.targets or (("minibroker",) if args.quick else ALL_TARGETS)
    timeout = args.timeout if args.timeout is not None else (60.0 if args.quick else 180.0)
    return RunConfig(
        targets=tuple(targets),
        workloads=tuple(args.workloads),
        counts=counts,
        body_size=args.body_size,
        timeout=timeout,
        fsync=args.fsync,
        max_load=args.max_load,
        repeat=max(1, args.repeat),
        quick=args.quick,
    )


def run_scenario(scenario: Scenario, progress: Any) -> list[Measurement]:
    """Run the phases of a scenario in turn (stopping at the first that fails), judge it."""
    outcomes: list[PhaseOutcome] = []
    reports: Reports = {}
    for build in scenario.phases:
        phase = build(reports)
        title = f"{scenario.target} · {scenario.label}"
        if phase.title:
            title += f" {phase.title}"
        task = progress.add_task(f"{title} · {scenario.client}", total=phase.progress_total or None)

        def on_progress(done: int, task: Any = task) -> None:
            progress.update(task, completed=done)

        outcome = run_phase(phase, on_progress=on_progress)
        progress.update(task, visible=False)
        outcomes.append(outcome)
        reports.update(outcome.reports)
        if outcome.first_error():
            break
    while len(outcomes) < len(scenario.phases):  # phases never reached
        outcomes.append(PhaseOutcome(reports={}, aborted="an earlier phase failed"))
    measured = scenario.evaluate(outcomes)
    client_cpu: dict[str, float] = {}
    for outcome in outcomes:
        client_cpu.update(role_cpu(outcome, scenario.count))
    for m in measured:
        m.extra.update(client_cpu)
    return measured


def role_cpu(outcome: PhaseOutcome, count: int) -> dict[str, float]:
    """Each client role's CPU per message and busy share (its CPU ÷ the wall time from
    the phase's start to its end; 1.0 = one core saturated, the client was the
    bottleneck). The W2 subscribers are summed up by their busiest."""
    out: dict[str, float] = {}
    for name, report in outcome.reports.items():
        cpu, t_done = report.get("cpu_s"), report.get("t_done")
        if cpu is None or t_done is None or outcome.t_go is None or not count:
            continue
        wall = t_done - outcome.t_go
        if wall <= 0:
            continue
        role = "sub" if name.startswith("sub-") else name
        per_msg = cpu * 1e6 / count
        busy = cpu / wall
        out[f"{role}_cpu_per_msg_us"] = max(out.get(f"{role}_cpu_per_msg_us", 0.0), per_msg)
        out[f"{role}_busy"] = max(out.get(f"{role}_busy", 0.0), busy)
    return out


@dataclass
class Session:
    """What every scenario of a run shares."""

    cfg: RunConfig
    results: RunResults
    console: Any
    progress: Any
    out: Path
    profiler: str | None = None  # py-spy, with --profile


def set_up(target: Target, session: Session) -> bool:
    """Reach or start a target. An unreachable peer is a skip line, never a crash."""
    try:
        reason = target.setup()
        if not reason:
            session.results.versions.update(target.versions())
            session.results.notes[target.name] = target.notes()
    except Exception as exc:
        reason = f"set-up failed: {type(exc).__name__}: {exc}"
    if reason:
        skip(session, f"{target.name}: skipped — {reason}")
        target.teardown()
        return False
    return True


def skip(session: Session, line: str) -> None:
    session.results.skipped.append(line)
    session.console.print(f"[yellow]SKIP[/] {line}")


def run_workload(target: Target, workload: str, session: Session) -> None:
    """Every way this target runs this workload (each client), each ``--repeat`` times."""
    cfg, name = session.cfg, target.name
    why_not = target.unavailable(workload)
    if why_not:
        skip(session, f"{name}: {workload} skipped — {why_not}")
        return
    impls = target.impls(workload)
    if not impls:
        session.console.print(f"[dim]{name}: {workload} is not part of this target[/]")
        return
    for impl in impls:
        # build the scenarios once per repetition: each gets fresh queue/topic names
        rounds = [BUILDERS[workload](name, impl, cfg) for _ in range(cfg.repeat)]
        for i in range(len(rounds[0])):
            runs = []
            for n, scenarios in enumerate(rounds):
                scenario = scenarios[i]
                label = scenario.label + (f" run {n + 1}" if cfg.repeat > 1 else "")
                svg = profile_path(session.out, name, label, scenario.client)
                with maybe_profile(session.profiler, target.server_pid(), svg):
                    runs.append(measure(scenario, session, target.cpu_pid()))
            for m in combine_runs(runs):
                print_measurement(session.console, m)
                session.results.measurements.append(m)


def measure(
    scenario: Scenario, session: Session, broker_pid: int | None = None
) -> list[Measurement]:
    """One run of a scenario; a harness exception becomes FAILED rows, not a crash.

    With ``broker_pid``, the broker's CPU seconds over the scenario (set-up
    included) go into each measurement's extras, also per message (W4: per
    request, which is a request and its reply).
    """
    cfg, console = session.cfg, session.console
    load = wait_for_quiet(cfg, console)
    cpu_before = process_cpu_seconds(broker_pid)
    try:
        measured = run_scenario(scenario, session.progress)
    except Exception as exc:  # a harness bug must not hide the other results
        why = f"harness error: {type(exc).__name__}: {exc}"
        measured = [
            Measurement(
                scenario.target, m, "FAILED", None, scenario.client, scenario.count, detail=why
            )
            for m in scenario.metrics
        ]
    cpu_after = process_cpu_seconds(broker_pid)
    for m in measured:
        m.extra["load_1m"] = load
        if cpu_before is not None and cpu_after is not None and scenario.count:
            m.extra["broker_cpu_s"] = cpu_after - cpu_before
            m.extra["broker_cpu_per_msg_us"] = (cpu_after - cpu_before) * 1e6 / scenario.count
    if cfg.repeat > 1:
        for m in measured:
            console.print(f"[dim]  run: {m.target} {METRICS[m.metric].title}: {format_value(m)}[/]")
    return measured


def combine_runs(runs: list[list[Measurement]]) -> list[Measurement]:
    """The median of repeated runs, per metric. Any failed run makes the metric FAILED:
    a run that lost a message is never averaged away."""
    if len(runs) == 1:
        return runs[0]
    combined = []
    for i in range(len(runs[0])):
        same = [run[i] for run in runs if i < len(run)]
        failed = [m for m in same if not m.ok]
        if failed:
            bad = failed[0]
            bad.detail = f"{len(failed)} of {len(same)} runs failed; first: {bad.detail}"
            combined.append(bad)
            continue
        values = sorted(m.value or 0.0 for m in same)
        median = statistics.median(values)
        pick = min(same, key=lambda m: abs((m.value or 0.0) - median))
        pick.value = median
        pick.extra = {**pick.extra, "runs": float(len(same)), "min": values[0], "max": values[-1]}
        combined.append(pick)
    return combined


def wait_for_quiet(cfg: RunConfig, console: Any) -> float:
    """With --max-load, wait (at most MAX_LOAD_WAIT seconds) until the 1-minute load
    average is below it. Returns the load average as the scenario starts."""
    load = load_average()
    if cfg.max_load is None or load < cfg.max_load:
        return load
    console.print(f"[dim]load {load:.2f} ≥ {cfg.max_load}: waiting up to {MAX_LOAD_WAIT:.0f}s[/]")
    end = time.monotonic() + MAX_LOAD_WAIT
    while load >= cfg.max_load and time.monotonic() < end:
        time.sleep(5)
        load = load_average()
    return load


def print_measurement(console: Any, m: Measurement) -> None:
    style = "green" if m.ok else "bold red"
    tail = f" — {m.detail}" if m.detail and not m.ok else ""
    console.print(
        f"[{style}]{m.status:>6}[/] {m.target:<18} {METRICS[m.metric].title:<34} "
        f"{format_value(m):>18}  [dim]{m.client}[/]{tail}"
    )


def format_value(m: Measurement) -> str:
    if not m.ok or m.value is None:
        return m.status
    unit = m.info.unit
    if unit in ("µs", "ms", "MiB"):
        return f"{m.value:,.1f} {unit}"
    return f"{m.value:,.0f} {unit}"


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks import report
    from benchmarks.sysinfo import machine_info
    from benchmarks.targets import make_target
    from benchmarks.ui import make_ui

    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or RESULTS_ROOT / stamp
    out.mkdir(parents=True, exist_ok=True)
    log_dir = out / "logs"
    log_dir.mkdir(exist_ok=True)
    console, progress = make_ui()

    argv_list = list(sys.argv[1:] if argv is None else argv)
    results = RunResults(
        started=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        command=shlex.join(["python", "-m", "benchmarks", *argv_list]),
        config=cfg.to_json(),
        machine=machine_info(),
    )
    console.print(f"[bold]minibroker benchmarks[/] → {out}")
    profiler = py_spy() if args.profile else None
    if args.profile and profiler is None:
        console.print(
            "[yellow]--profile: py-spy is not installed (pip install py-spy); no profiles[/]"
        )
    console.print(
        f"targets {', '.join(cfg.targets)} · workloads {', '.join(cfg.workloads)} · "
        f"body {cfg.body_size} B{' · quick' if cfg.quick else ''}"
    )
    # the checksums the receivers must reach, computed once up front
    for n in {cfg.counts.queue, cfg.counts.fanout, cfg.counts.log}:
        expected_checksum(n, cfg.body_size)

    # Workload by workload, every target in turn: the targets of one comparison run close
    # together in time, so a busy spell on the machine does not land on one target only.
    session = Session(cfg, results, console, progress, out, profiler)
    interrupted = False
    ready: list[Target] = []
    try:
        with progress:
            for name in cfg.targets:
                target = make_target(name, cfg, log_dir)
                if set_up(target, session):
                    ready.append(target)
            for workload in cfg.workloads:
                for target in ready:
                    run_workload(target, workload, session)
    except KeyboardInterrupt:
        interrupted = True
        results.skipped.append("interrupted (Ctrl-C): the remaining scenarios did not run")
        console.print("[yellow]interrupted: writing the results measured so far[/]")
    finally:
        for target in ready:
            target.teardown()

    results.finished = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    results.machine["load_end"] = load_average()
    results.profiles = sorted(str(p.relative_to(out)) for p in out.glob("profiles/*.svg"))
    results.save(out / "results.json")
    (out / "results.md").write_text(report.render_markdown(results))
    if not args.no_plots:
        try:
            for path in report.render_plots(results, out):
                console.print(f"[dim]plot {path}[/]")
        except ImportError as exc:
            console.print(f"[yellow]no plots ({exc}); pip install matplotlib[/]")
    report.print_summary(results, console)
    console.print(f"results: {out / 'results.md'}")
    if interrupted:
        return 130
    failed = results.failed()
    if failed:
        console.print(f"[bold red]{len(failed)} FAILED measurement(s)[/]")
        return 1
    return 0
