"""Prometheus families for logs, and the fsync latency histogram of group commit.

Everything is read from plain numbers at scrape time (see server/metrics.py):
the log model keeps counters on each log, and the broker's durability
(core/durability.py) records each group-commit fsync's duration in a
:class:`~minibroker.core.histogram.LatencyHistogram`, a list of bucket
counts that costs one bisect per observation. Nothing here runs on the
append path.

Families (labels: ``namespace``, ``log``; ``group`` for group families):

* ``minibroker_log_appended_records_total`` / ``..._appended_bytes_total``
  (bodies) since start;
* ``minibroker_log_first_offset``, ``minibroker_log_end_offset`` (the next
  offset to be assigned), ``minibroker_log_bytes``, ``minibroker_log_segments``;
* ``minibroker_log_group_committed_offset``, ``minibroker_log_group_lag``
  (records between the committed offset and the end);
* ``minibroker_fsync_seconds`` (histogram): one group-commit fsync round, over
  every store with unsynced writes (logs and durable queues);
* ``minibroker_storage_failed_stores`` (gauge): stores whose fsync failed,
  fail-stop until the broker restarts (server/health.py lists them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from minibroker.core.broker import Broker
from minibroker.core.log_options import LogStatistics
from minibroker.server.health import failed_stores

if TYPE_CHECKING:
    from prometheus_client.core import Metric


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
    histogram = broker.durability.fsync_seconds
    yield HistogramMetricFamily(
        "minibroker_fsync_seconds",
        "Duration of one group-commit fsync round over every store with unsynced writes",
        buckets=histogram.cumulative(),
        sum_value=histogram.total,
    )
    yield GaugeMetricFamily(
        "minibroker_storage_failed_stores",
        "Stores whose fsync failed: they refuse durable writes until the broker restarts",
        value=len(failed_stores(broker)),
    )

