"""The five workloads: how their roles are laid out and how a run is judged.

A target (see :mod:`benchmarks.targets.base`) says *how* to talk to its
broker by naming role functions; this module says *what* is measured, so every
target is measured the same way. The contract for role reports:

W1 queue        producer -> {"t_start", "t_end", "sent"}
                consumer -> Verifier.report()   (listener, declares the queue)
W2 fan-out      publisher -> {"t_start", "t_end", "sent"}
                sub-0..3  -> Verifier.report()   (listeners, subscribed before ready)
W3 log          phase 1 appender -> {"t_start", "t_end", "sent", "first_offset"}
                phase 2 replayer -> Verifier.report() + {"t_start"}   (a fresh process)
W4 req/reply    responder (listener, stops when told) -> {"served"}
                requester -> {"p50_us", "p90_us", "p99_us", "max_us", "seq_count",
                              "conc_count", "conc_elapsed", "errors", "mismatches"}
W5 start-up     startup -> {"metrics": {metric: value}, "extra": {...}, "detail": str}

Role parameters always include ``count``, ``body_size``, ``batch``,
``idle_timeout`` and whatever the target put in its ``params``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from benchmarks.config import RunConfig
from benchmarks.payload import verify_report
from benchmarks.results import Measurement
from benchmarks.runner import Phase, PhaseOutcome, Reports, RoleSpec

# --- what a target provides -------------------------------------------------------


@dataclass(frozen=True)
class Impl:
    """One way of running a workload against a target (one client library)."""

    client: str  # shown in the report, e.g. "pika 1.3.2 (BlockingConnection)"
    roles: dict[str, str]  # role kind -> "module:function"
    params: dict[str, Any] = field(default_factory=dict)
    variants: tuple[str, ...] = ()  # W1: "plain", "confirmed"; W5: which metrics
    detail: str = ""  # a remark copied to every measurement
    # A lower message count for a client too slow to move the run's count within the phase
    # timeout; shown in the report's Count column and remarks. Rates stay comparable.
    count_cap: int | None = None

    def capped(self, count: int) -> tuple[int, str]:
        """(count to use, remark) for a run of ``count`` messages."""
        if self.count_cap is None or count <= self.count_cap:
            return count, self.detail
        remark = f"count capped at {self.count_cap:,} (of {count:,}) for this client"
        return self.count_cap, "; ".join(x for x in (self.detail, remark) if x)


# --- what the harness runs --------------------------------------------------------


@dataclass
class Scenario:
    target: str
    workload: str
    label: str
    client: str
    phases: Sequence[Callable[[Reports], Phase]]  # built in turn from earlier reports
    evaluate: Callable[[list[PhaseOutcome]], list[Measurement]]
    metrics: tuple[str, ...]  # what evaluate() reports on
    count: int = 0


def unique(prefix: str) -> str:
    return f"bench.{prefix}.{uuid.uuid4().hex[:10]}"


def _common(cfg: RunConfig, impl: Impl, count: int) -> dict[str, Any]:
    return {
        "count": count,
        "body_size": cfg.body_size,
        "batch": cfg.batch,
        "prefetch": cfg.prefetch,
        "ack_every": cfg.ack_every,
        "confirm_window": cfg.confirm_window,
        "idle_timeout": cfg.idle_timeout,
        **impl.params,
    }


def _failed(
    target: str, metrics: Sequence[str], client: str, count: int, why: str
) -> list[Measurement]:
    return [Measurement(target, m, "FAILED", None, client, count, detail=why) for m in metrics]


def _phase_error(outcomes: list[PhaseOutcome]) -> str | None:
    for outcome in outcomes:
        error = outcome.first_error()
        if error:
            return error
    return None


def _fixed(phase: Phase) -> Callable[[Reports], Phase]:
    """A phase factory for a phase that does not depend on earlier reports."""

    def build(_reports: Reports) -> Phase:
        return phase

    return build


def _rate(count: int, t_start: float | None, t_end: float | None) -> float | None:
    if t_start is None or t_end is None or t_end <= t_start:
        return None
    return count / (t_end - t_start)


# --- W1 ------------------------------------------------------------------------


def queue_scenarios(target: str, impl: Impl, cfg: RunConfig) -> list[Scenario]:
    count, detail = impl.capped(cfg.counts.queue)
    impl = replace(impl, detail=detail)
    scenarios = []
    for variant in impl.variants or ("plain", "confirmed"):
        metric = "queue_confirmed" if variant == "confirmed" else "queue"
        params = {
            **_common(cfg, impl, count),
            "queue": unique("w1"),
            "confirmed": variant == "confirmed",
        }
        phase = Phase(
            roles=(
                RoleSpec(
                    "consumer", impl.roles["consumer"], params, listener=True, counts_progress=True
                ),
                RoleSpec("producer", impl.roles["producer"], params),
            ),
            timeout=cfg.timeout,
            progress_total=count,
        )

        def evaluate(outcomes: list[PhaseOutcome], metric: str = metric) -> list[Measurement]:
            return _evaluate_queue(target, metric, impl, cfg, count, outcomes)

        scenarios.append(
            Scenario(
                target,
                "w1",
                f"W1 {variant}",
                impl.client,
                [_fixed(phase)],
                evaluate,
                (metric,),
                count,
            )
        )
    return scenarios


def _evaluate_queue(
    target: str, metric: str, impl: Impl, cfg: RunConfig, count: int, outcomes: list[PhaseOutcome]
) -> list[Measurement]:
    error = _phase_error(outcomes)
    if error:
        return _failed(target, [metric], impl.client, count, error)
    reports = outcomes[0].reports
    producer, consumer = reports["producer"], reports["consumer"]
    problem, remark = verify_report(consumer, count, cfg.body_size)
    if problem:
        return _failed(target, [metric], impl.client, count, problem)
    value = _rate(count, producer["t_start"], consumer["t_last"])
    extra = {
        "elapsed_s": consumer["t_last"] - producer["t_start"],
        "publish_rate": _rate(count, producer["t_start"], producer["t_end"]) or 0.0,
        "mb_per_s": (value or 0.0) * cfg.body_size / 1e6,
    }
    detail = "; ".join(x for x in (impl.detail, remark) if x)
    return [Measurement(target, metric, "ok", value, impl.client, count, extra, detail)]


# --- W2 ------------------------------------------------------------------------


def fanout_scenarios(target: str, impl: Impl, cfg: RunConfig) -> list[Scenario]:
    count, detail = impl.capped(cfg.counts.fanout)
    impl = replace(impl, detail=detail)
    subs = cfg.subscribers
    topic = unique("w2")
    params = {**_common(cfg, impl, count), "topic": topic}
    roles = [
        RoleSpec(f"sub-{i}", impl.roles["subscriber"], params, listener=True, counts_progress=True)
        for i in range(subs)
    ]
    roles.append(RoleSpec("publisher", impl.roles["publisher"], params))
    phase = Phase(roles=tuple(roles), timeout=cfg.timeout, progress_total=count * subs)

    def evaluate(outcomes: list[PhaseOutcome]) -> list[Measurement]:
        error = _phase_error(outcomes)
        if error:
            return _failed(target, ["fanout"], impl.client, count, error)
        reports = outcomes[0].reports
        remarks = []
        for i in range(subs):
            problem, remark = verify_report(reports[f"sub-{i}"], count, cfg.body_size)
            if problem:
                return _failed(target, ["fanout"], impl.client, count, f"sub-{i}: {problem}")
            if remark:
                remarks.append(f"sub-{i}: {remark}")
        pub = reports["publisher"]
        t_last = max(reports[f"sub-{i}"]["t_last"] for i in range(subs))
        value = _rate(count * subs, pub["t_start"], t_last)
        extra = {
            "elapsed_s": t_last - pub["t_start"],
            "publish_rate": _rate(count, pub["t_start"], pub["t_end"]) or 0.0,
        }
        detail = "; ".join([impl.detail, *remarks]).strip("; ")
        return [Measurement(target, "fanout", "ok", value, impl.client, count, extra, detail)]

    return [
        Scenario(
            target, "w2", "W2 fan-out", impl.client, [_fixed(phase)], evaluate, ("fanout",), count
        )
    ]


# --- W3 ------------------------------------------------------------------------


def log_scenarios(target: str, impl: Impl, cfg: RunConfig) -> list[Scenario]:
    count, detail = impl.capped(cfg.counts.log)
    impl = replace(impl, detail=detail)
    params = {**_common(cfg, impl, count), "log": unique("w3")}
    metrics = ["log_append", "log_replay"]

    def append_phase(_r: Reports) -> Phase:
        role = RoleSpec("appender", impl.roles["appender"], params, counts_progress=True)
        return Phase((role,), cfg.timeout, progress_total=count, title="append")

    def replay_phase(previous: Reports) -> Phase:
        start = previous.get("appender", {}).get("first_offset", 0)
        role = RoleSpec(
            "replayer", impl.roles["replayer"], {**params, "start": start}, counts_progress=True
        )
        return Phase((role,), cfg.timeout, progress_total=count, title="replay")

    def evaluate(outcomes: list[PhaseOutcome]) -> list[Measurement]:
        error = _phase_error(outcomes)
        if error:
            return _failed(target, metrics, impl.client, count, error)
        appender = outcomes[0].reports["appender"]
        replayer = outcomes[1].reports["replayer"]
        problem, remark = verify_report(replayer, count, cfg.body_size)
        if problem:
            return _failed(target, metrics, impl.client, count, f"replay: {problem}")
        detail = "; ".join(x for x in (impl.detail, remark) if x)
        out = []
        for metric, t0, t1 in (
            ("log_append", appender["t_start"], appender["t_end"]),
            ("log_replay", replayer["t_start"], replayer["t_last"]),
        ):
            value = _rate(count, t0, t1)
            extra = {"elapsed_s": t1 - t0, "mb_per_s": (value or 0.0) * cfg.body_size / 1e6}
            out.append(Measurement(target, metric, "ok", value, impl.client, count, extra, detail))
        return out

    return [
        Scenario(
            target,
            "w3",
            "W3 log",
            impl.client,
            [append_phase, replay_phase],
            evaluate,
            tuple(metrics),
            count,
        )
    ]


# --- W4 ------------------------------------------------------------------------


def rr_scenarios(target: str, impl: Impl, cfg: RunConfig) -> list[Scenario]:
    c = cfg.counts
    total = c.rr_warmup + c.rr_sequential + c.rr_concurrent
    params = {
        **_common(cfg, impl, total),
        "subject": unique("w4"),
        "warmup": c.rr_warmup,
        "sequential": c.rr_sequential,
        "concurrent": c.rr_concurrent,
        "concurrency": cfg.concurrency,
        "request_timeout": 5.0,
    }
    phase = Phase(
        roles=(
            RoleSpec("responder", impl.roles["responder"], params, listener=True),
            RoleSpec("requester", impl.roles["requester"], params, counts_progress=True),
        ),
        timeout=cfg.timeout,
        progress_total=total,
    )
    metrics = ["rr_latency_p50", "rr_latency_p99", "rr_throughput"]

    def evaluate(outcomes: list[PhaseOutcome]) -> list[Measurement]:
        error = _phase_error(outcomes)
        if error:
            return _failed(target, metrics, impl.client, total, error)
        req = outcomes[0].reports["requester"]
        if req.get("errors") or req.get("mismatches"):
            why = (
                f"{req.get('errors', 0)} failed requests, {req.get('mismatches', 0)} wrong replies"
            )
            return _failed(target, metrics, impl.client, total, why)
        if req["seq_count"] != c.rr_sequential or req["conc_count"] != c.rr_concurrent:
            answered = f"{req['seq_count']}+{req['conc_count']}"
            why = f"answered {answered} of {c.rr_sequential}+{c.rr_concurrent} requests"
            return _failed(target, metrics, impl.client, total, why)
        lat = {k: float(req[k]) for k in ("p50_us", "p90_us", "p99_us", "max_us", "mean_us")}
        throughput = c.rr_concurrent / req["conc_elapsed"] if req["conc_elapsed"] > 0 else None
        return [
            Measurement(
                target,
                "rr_latency_p50",
                "ok",
                lat["p50_us"],
                impl.client,
                c.rr_sequential,
                lat,
                impl.detail,
            ),
            Measurement(
                target,
                "rr_latency_p99",
                "ok",
                lat["p99_us"],
                impl.client,
                c.rr_sequential,
                lat,
                impl.detail,
            ),
            Measurement(
                target,
                "rr_throughput",
                "ok",
                throughput,
                impl.client,
                c.rr_concurrent,
                {"elapsed_s": req["conc_elapsed"], "in_flight": cfg.concurrency},
                impl.detail,
            ),
        ]

    return [
        Scenario(
            target,
            "w4",
            "W4 request/reply",
            impl.client,
            [_fixed(phase)],
            evaluate,
            tuple(metrics),
            total,
        )
    ]


# --- W5 ------------------------------------------------------------------------


def startup_scenarios(target: str, impl: Impl, cfg: RunConfig) -> list[Scenario]:
    params = {**_common(cfg, impl, 1)}
    phase = Phase((RoleSpec("startup", impl.roles["startup"], params),), min(cfg.timeout, 120.0))
    metrics = list(impl.variants)

    def evaluate(outcomes: list[PhaseOutcome]) -> list[Measurement]:
        error = _phase_error(outcomes)
        if error:
            return _failed(target, metrics, impl.client, 1, error)
        rep = outcomes[0].reports["startup"]
        values: dict[str, float] = rep.get("metrics", {})
        extra: dict[str, float] = rep.get("extra", {})
        detail = "; ".join(x for x in (impl.detail, rep.get("detail", "")) if x)
        out = []
        for metric in metrics:
            if metric in values:
                out.append(
                    Measurement(target, metric, "ok", values[metric], impl.client, 1, extra, detail)
                )
            else:
                out.append(
                    Measurement(
                        target,
                        metric,
                        "FAILED",
                        None,
                        impl.client,
                        1,
                        detail=f"no {metric} in the report",
                    )
                )
        return out

    return [
        Scenario(
            target, "w5", "W5 start-up", impl.client, [_fixed(phase)], evaluate, tuple(metrics), 1
        )
    ]


BUILDERS: dict[str, Callable[[str, Impl, RunConfig], list[Scenario]]] = {
    "w1": queue_scenarios,
    "w2": fanout_scenarios,
    "w3": log_scenarios,
    "w4": rr_scenarios,
    "w5": startup_scenarios,
}
