"""Prometheus families for logs, and the fsync latency histogram of group commit.

Everything is read from plain numbers at scrape time (see server/metrics.py):
the log model keeps counters on each log, and group commit records each
fsync's duration in a :class:`LatencyHistogram`, a list of bucket counts
that costs one bisect per observation. Nothing here runs on the append path.

Families (labels: ``namespace``, ``log``; ``group`` for group families):

* ``minibroker_log_appended_records_total`` / ``..._appended_bytes_total``
  (bodies) since start;
* ``minibroker_log_first_offset``, ``minibroker_log_end_offset`` (the next
  offset to be assigned), ``minibroker_log_bytes``, ``minibroker_log_segments``;
* ``minibroker_log_group_committed_offset``, ``minibroker_log_group_lag``
  (records between the committed offset and the end);
* ``minibroker_fsync_seconds`` (histogram): one group-commit fsync round, over
  every store with unsynced writes (logs and durable queues).
"""

from __future__ import annotations

import weakref
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final

from minibroker.core.broker import Broker
from minibroker.core.log_options import LogStatistics

if TYPE_CHECKING:
    from prometheus_client.core import Metric

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


_FSYNC: weakref.WeakKeyDictionary[Broker, LatencyHistogram] = weakref.WeakKeyDictionary()


def fsync_histogram(broker: Broker) -> LatencyHistogram:
    """The fsync latency histogram of ``broker`` (created on first use)."""
    histogram = _FSYNC.get(broker)
    if histogram is None:
        histogram = _FSYNC[broker] = LatencyHistogram()
    return histogram


def _all_logs(broker: Broker) -> Iterator[tuple[str, LogStatistics]]:
    for name, namespace in sorted(broker.namespaces.items()):
        for stats in namespace.logs.all_statistics():
            yield name, stats


def log_metrics(broker: Broker) -> Iterable[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    labels = ["namespace", "log"]
    records = CounterMetricFamily(
        "minibroker_log_appended_records", "Records appended to a log", labels=labels
    )
    appended_bytes = CounterMetricFamily(
        "minibroker_log_appended_bytes", "Body bytes appended to a log", labels=labels
    )
    first = GaugeMetricFamily("minibroker_log_first_offset", "First retained offset", labels=labels)
    end = GaugeMetricFamily(
        "minibroker_log_end_offset", "Offset the next appended record gets", labels=labels
    )
    size = GaugeMetricFamily("minibroker_log_bytes", "Bytes of retained records", labels=labels)
    segments = GaugeMetricFamily("minibroker_log_segments", "Segments of a log", labels=labels)
    group_labels = [*labels, "group"]
    committed = GaugeMetricFamily(
        "minibroker_log_group_committed_offset",
        "Offset a consumer group committed (next to read)",
        labels=group_labels,
    )
    lag = GaugeMetricFamily(
        "minibroker_log_group_lag",
        "Records between a group's committed offset and the end of the log",
        labels=group_labels,
    )
    for namespace, stats in _all_logs(broker):
        values = [namespace, stats.name]
        records.add_metric(values, stats.appended_records)
        appended_bytes.add_metric(values, stats.appended_bytes)
        first.add_metric(values, stats.first_offset)
        end.add_metric(values, stats.next_offset)
        size.add_metric(values, stats.bytes)
        segments.add_metric(values, stats.segments)
        for group, position in sorted(stats.groups.items()):
            committed.add_metric([*values, group], position.committed)
            lag.add_metric([*values, group], position.lag)
    yield from (records, appended_bytes, first, end, size, segments, committed, lag)
    histogram = fsync_histogram(broker)
    yield HistogramMetricFamily(
        "minibroker_fsync_seconds",
        "Duration of one group-commit fsync round over every store with unsynced writes",
        buckets=histogram.cumulative(),
        sum_value=histogram.total,
    )

