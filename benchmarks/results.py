"""What a run measured: one :class:`Measurement` per target, workload and metric."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["ok", "FAILED"]
Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class MetricInfo:
    key: str
    workload: str
    title: str
    unit: str
    better: Better


METRICS: dict[str, MetricInfo] = {
    m.key: m
    for m in (
        MetricInfo("queue", "w1", "queue, end to end", "msgs/s", "higher"),
        MetricInfo("queue_confirmed", "w1", "queue, confirmed publish", "msgs/s", "higher"),
        MetricInfo("fanout", "w2", "fan-out to 4, delivered", "msgs/s", "higher"),
        MetricInfo("log_append", "w3", "log append (batched)", "records/s", "higher"),
        MetricInfo("log_replay", "w3", "log replay from start", "records/s", "higher"),
        MetricInfo("rr_latency_p50", "w4", "request/reply p50, sequential", "µs", "lower"),
        MetricInfo("rr_latency_p99", "w4", "request/reply p99, sequential", "µs", "lower"),
        MetricInfo("rr_throughput", "w4", "request/reply, 16 in flight", "req/s", "higher"),
        MetricInfo("startup_server", "w5", "server: launch to first op", "ms", "lower"),
        MetricInfo("startup_embedded", "w5", "embedded: open to first op", "ms", "lower"),
        MetricInfo("idle_rss", "w5", "server idle RSS", "MiB", "lower"),
    )
}

WORKLOADS: dict[str, str] = {
    "w1": "W1 queue: 1 producer, 1 consumer, every message acked",
    "w2": "W2 fan-out: 1 publisher, 4 subscriber processes",
    "w3": "W3 log: append in batches, then replay from the start with a fresh consumer",
    "w4": "W4 request/reply: 1 requester, 1 responder process",
    "w5": "W5 start-up and idle memory",
}


@dataclass
class Measurement:
    target: str
    metric: str  # a key of METRICS
    status: Status
    value: float | None
    client: str  # which client library and how it was driven
    count: int = 0
    extra: dict[str, float] = field(default_factory=dict)  # MB/s, elapsed, p90 ...
    detail: str = ""  # failure reason, or a remark (duplicates, observed-not-launched ...)

    @property
    def info(self) -> MetricInfo:
        return METRICS[self.metric]

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.value is not None


@dataclass
class RunResults:
    started: str
    command: str
    config: dict[str, Any]
    machine: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one clear line each
    notes: dict[str, list[str]] = field(default_factory=dict)  # target -> how it was configured
    profiles: list[str] = field(default_factory=list)  # --profile: flame graphs, relative paths
    finished: str = ""

    def failed(self) -> list[Measurement]:
        return [m for m in self.measurements if m.status == "FAILED"]

    def targets(self) -> list[str]:
        seen: list[str] = []
        for m in self.measurements:
            if m.target not in seen:
                seen.append(m.target)
        return seen

    def best(self, target: str, metric: str) -> Measurement | None:
        """The best passing measurement of a target for a metric (e.g. pika vs aio-pika);
        if none passed, the first failure; None if it was not measured."""
        rows = [m for m in self.measurements if m.target == target and m.metric == metric]
        passing = [m for m in rows if m.ok]
        if passing:
            lower = METRICS[metric].better == "lower"
            return (min if lower else max)(passing, key=lambda m: m.value or 0.0)
        return rows[0] if rows else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunResults:
        data = json.loads(path.read_text())
        data["measurements"] = [Measurement(**m) for m in data.get("measurements", [])]
        return cls(**data)
