"""A latency histogram as plain numbers: one bisect per observation.

The core records durations here (the group commit's fsync rounds, see
:mod:`minibroker.core.durability`) without knowing about Prometheus; the
shell converts the counts to a histogram family at scrape time
(``server/log_metrics.py``), so nothing on the write path touches a metrics
library.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

#: Upper bounds of the fsync histogram buckets, in seconds (+Inf is implied).
FSYNC_BUCKETS: Final = (
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


class LatencyHistogram:
    """Bucketed durations as plain numbers; converted to Prometheus at scrape time."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = FSYNC_BUCKETS) -> None:
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

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus buckets: (upper bound, observations at or below it)."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out
