"""The parent side: run a phase's roles in separate processes, with deadlines.

A :class:`Phase` is a set of roles started together. The runner starts every
role process (``spawn``), waits until all of them called ``ctx.ready()``, then
sets the shared *go* event: drivers start their clocks. When every driver has
reported, it sets the *stop* event (responders finish, receivers may give up
once idle). Every wait is bounded by the phase timeout; a role that has not
reported by then is terminated and reported as timed out.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.child import child_main

SPAWN = mp.get_context("spawn")
READY_TIMEOUT = 60.0
ABORT_GRACE = 3.0
JOIN_GRACE = 5.0

Report = dict[str, Any]
Reports = dict[str, Report]


@dataclass(frozen=True)
class RoleSpec:
    """One process of a phase."""

    name: str
    func: str  # "package.module:function", imported in the child
    params: dict[str, Any]
    listener: bool = False  # a receiver/responder: does not wait for "go"
    counts_progress: bool = False  # its ctx.progress() feeds the progress bar


@dataclass(frozen=True)
class Phase:
    roles: tuple[RoleSpec, ...]
    timeout: float
    progress_total: int = 0
    title: str = ""


@dataclass
class PhaseOutcome:
    reports: Reports
    aborted: str | None = None  # why the phase never started its clock
    elapsed: float = 0.0
    t_go: float | None = None  # perf_counter() when the clock started
    errors: list[str] = field(default_factory=list)

    def first_error(self) -> str | None:
        if self.aborted:
            return self.aborted
        for name, report in self.reports.items():
            if not report.get("ok"):
                return f"{name}: {report.get('error', 'failed')}"
        return None


def run_phase(
    phase: Phase,
    on_progress: Callable[[int], None] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> PhaseOutcome:
    start = time.perf_counter()
    deadline = start + phase.timeout
    results: Any = SPAWN.Queue()
    go = SPAWN.Event()
    stop = SPAWN.Event()
    ready: dict[str, Any] = {}
    progress: dict[str, Any] = {}
    procs: dict[str, Any] = {}
    reports: Reports = {}

    for role in phase.roles:
        ready[role.name] = SPAWN.Event()
        progress[role.name] = SPAWN.RawValue("q", 0)
        proc = SPAWN.Process(
            target=child_main,
            name=f"bench-{role.name}",
            args=(
                role.name,
                role.func,
                role.params,
                ready[role.name],
                go,
                stop,
                progress[role.name],
                deadline,
                results,
            ),
            daemon=True,
        )
        proc.start()
        procs[role.name] = proc

    def drain(timeout: float) -> None:
        try:
            name, report = results.get(timeout=timeout)
        except queue.Empty:
            return
        reports[name] = report
        while True:
            try:
                name, report = results.get_nowait()
            except queue.Empty:
                return
            reports[name] = report

    def dead_without_report() -> list[str]:
        return [n for n, p in procs.items() if p.exitcode is not None and n not in reports]

    def report_progress() -> None:
        if on_progress is not None:
            on_progress(sum(progress[r.name].value for r in phase.roles if r.counts_progress))

    outcome = PhaseOutcome(reports=reports)

    # 1. everyone connects and sets up
    ready_deadline = min(deadline, start + ready_timeout)
    while not all(event.is_set() for event in ready.values()):
        drain(0.05)
        failed = [n for n, r in reports.items() if not r.get("ok")]
        if failed:
            outcome.aborted = f"{failed[0]} failed during set-up: {reports[failed[0]].get('error')}"
            break
        dead = dead_without_report()
        if dead:
            drain(0.5)
            dead = dead_without_report()
            if dead:
                code = procs[dead[0]].exitcode
                outcome.aborted = f"{dead[0]} exited with code {code} during set-up"
                break
        if time.perf_counter() > ready_deadline:
            late = [n for n, e in ready.items() if not e.is_set()]
            outcome.aborted = f"not ready after {ready_timeout:.0f}s: {', '.join(late)}"
            break

    if outcome.aborted:
        stop.set()
        _finish(procs, drain, ABORT_GRACE)
        outcome.elapsed = time.perf_counter() - start
        return outcome

    # 2. the clock runs
    outcome.t_go = time.perf_counter()
    go.set()
    drivers = {r.name for r in phase.roles if not r.listener}
    while len(reports) < len(procs):
        drain(0.1)
        report_progress()
        if not stop.is_set() and drivers <= reports.keys():
            stop.set()
        if any(not r.get("ok") for r in reports.values()):
            stop.set()  # a failed role: let the others wind down
        dead = dead_without_report()
        if dead:
            drain(0.5)
            for name in dead_without_report():
                code = procs[name].exitcode
                reports[name] = {"ok": False, "error": f"exited with code {code} without a report"}
        if time.perf_counter() > deadline:
            break
    report_progress()
    stop.set()
    _finish(procs, drain, JOIN_GRACE)
    for name in procs:
        if name not in reports:
            reports[name] = {"ok": False, "error": f"timed out after {phase.timeout:.0f}s"}
    outcome.elapsed = time.perf_counter() - start
    return outcome


def _finish(procs: dict[str, Any], drain: Callable[[float], None], grace: float) -> None:
    """Join every process, terminating (then killing) those still running."""
    end = time.perf_counter() + grace
    for proc in procs.values():
        while proc.is_alive() and time.perf_counter() < end:
            drain(0.05)
            proc.join(0.05)
    for proc in procs.values():
        if proc.is_alive():
            proc.terminate()
    for proc in procs.values():
        proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)
    drain(0.01)
