"""Plain counters for request/reply: outcomes, dropped replies, latency buckets.

The core bumps ints here on every request; ``server/rpc_metrics.py`` turns
them into Prometheus families at scrape time, so the hot path never touches
a prometheus object (see ``protocol/stats.py`` for the same idea).

Latency is kept per subject as cumulative-free bucket counts plus a sum,
exactly what a Prometheus histogram needs. Subjects are client-chosen, so
the number of distinct subjects tracked is capped: past
:data:`MAX_TRACKED_SUBJECTS`, new subjects share the :data:`OTHER_SUBJECT`
bucket and a metrics backend never sees an unbounded label set.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Final

#: Upper bounds (seconds) of the latency buckets; the last bucket is +Inf.
#: Loopback request/reply sits near 100-300 µs, so the low end is fine-grained.
LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: Most subjects given their own latency histogram per namespace.
MAX_TRACKED_SUBJECTS: Final = 256
#: Label used for every subject beyond the cap.
OTHER_SUBJECT: Final = "_other"

#: Every way a request can end; the keys of :attr:`RpcStats.outcomes`.
#: ``abandoned`` means the requester disconnected before the request ended.
OUTCOMES: Final[tuple[str, ...]] = (
    "ok",
    "error",
    "timeout",
    "no_responders",
    "responder_gone",
    "abandoned",
)


@dataclass(slots=True)
class LatencyHistogram:
    """Counts per bucket (not cumulative) and the sum of observed seconds."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def merge(self, other: LatencyHistogram) -> None:
        for index, value in enumerate(other.counts):
            self.counts[index] += value
        self.total += other.total


@dataclass(slots=True)
class RpcStats:
    """Everything the request/reply model counts, for one namespace."""

    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    #: Replies that found no waiting request (late, duplicate or unknown rid).
    replies_dropped: int = 0
    #: Requests handed back to another responder because theirs left before seeing them.
    rerouted: int = 0
    latency: dict[str, LatencyHistogram] = field(default_factory=dict)

    def observe(self, subject: str, seconds: float) -> None:
        """Record one answered request (reply or responder error)."""
        histogram = self.latency.get(subject)
        if histogram is None:
            if len(self.latency) >= MAX_TRACKED_SUBJECTS:
                subject = OTHER_SUBJECT
            histogram = self.latency.get(subject)
            if histogram is None:
                histogram = self.latency[subject] = LatencyHistogram()
        histogram.observe(seconds)
