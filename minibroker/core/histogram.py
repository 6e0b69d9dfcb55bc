"""A latency histogram as plain numbers: one bisect per observation.

The core records durations here (the group commit's fsync rounds, see
:mod:`minibroker.core.durability`; request/reply latency per subject, see
:mod:`minibroker.core.rpc_stats`) without knowing about Prometheus; the
shell converts the counts to histogram families at scrape time
(``server/log_metrics.py``, ``server/rpc_metrics.py``), so nothing on a hot
path touches a metrics library.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

#: Upper bounds of buckets from 100 µs to 1 s, in seconds (+Inf is implied):
#: a local fsync or request round trip sits near the low end.
SUBSECOND_BUCKETS: Final[tuple[float, ...]] = (
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
)
#: The fsync histogram's buckets (group commit rounds).
FSYNC_BUCKETS: Final = SUBSECOND_BUCKETS


class LatencyHistogram:
    """Bucketed durations as plain numbers; converted to Prometheus at scrape time."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        #: counts[i]: observations <= bounds[i] and > bounds[i-1]; the last is +Inf.
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s observations (same bounds) to this histogram."""
        for index, value in enumerate(other.counts):
            self.counts[index] += value
        self.total += other.total

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus buckets: (upper bound, observations at or below it)."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out
