"""Prometheus families for queues, read from each queue's statistics at scrape time.

One of ``METRIC_SOURCES``, the list in server/metrics.py.
The queue model keeps plain integer counters (see
:class:`~minibroker.core.queue_options.QueueStatistics`); a scrape takes one
``statistics()`` snapshot per queue and turns it into samples, so the put,
fetch and ack paths never touch a metrics object.

Labels are ``namespace`` and ``queue``: one series per existing queue, so
the label set is bounded by the queues that exist (a deleted queue's series
disappear with it, and its counters with them).

Families (counters get Prometheus's ``_total`` suffix):

* gauges: ``minibroker_queue_ready``, ``..._in_flight``, ``..._delayed``
  (messages in each place now), ``..._consumers`` (connections holding
  deliveries or waiting in a fetch), ``..._waiting_fetches``;
* counters since the broker started: ``minibroker_queue_published``,
  ``..._delivered``, ``..._redelivered``, ``..._acked``, ``..._requeued``,
  ``..._expired``, ``..._dead_lettered``, ``..._dropped``, ``..._purged``,
  ``..._rejected_publishes``, ``..._journal_errors``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from minibroker.core.broker import Broker
from minibroker.core.queue_options import QueueStatistics
from minibroker.core.queues import Queues

if TYPE_CHECKING:
    from prometheus_client.core import Metric

LABELS = ["namespace", "queue"]

#: (QueueStatistics field, help) of every gauge: where messages are now.
GAUGES: tuple[tuple[str, str], ...] = (
    ("ready", "Messages waiting to be fetched"),
    ("in_flight", "Messages delivered and not yet acked, nacked or timed out"),
    ("delayed", "Messages nacked with a delay, waiting to be ready again"),
    ("consumers", "Connections holding deliveries of the queue or waiting in a fetch"),
    ("waiting_fetches", "Long-polling fetches parked on the queue"),
)

#: (QueueStatistics field, help) of every counter.
COUNTERS: tuple[tuple[str, str], ...] = (
    ("published", "Messages accepted by the queue (puts and arriving dead letters)"),
    ("delivered", "Deliveries made (a message delivered three times counts three)"),
    ("redelivered", "Deliveries that were not a message's first"),
    ("acked", "Messages acknowledged"),
    ("requeued", "Messages given back by nack, visibility timeout or disconnect"),
    ("expired", "Messages whose TTL ran out (also counted as dead-lettered or dropped)"),
    ("dead_lettered", "Messages moved to the dead-letter queue"),
    ("dropped", "Messages discarded by a policy with no dead-letter queue to take them"),
    ("purged", "Messages removed by purge"),
    ("rejected_publishes", "Messages refused because the queue was full (reject_publish)"),
    ("journal_errors", "Durable writes that failed outside a request"),
)


def _all_queues(broker: Broker) -> Iterator[tuple[str, QueueStatistics]]:
    for name, namespace in sorted(broker.namespaces.items()):
        queues = getattr(namespace, "queues", None)
        if isinstance(queues, Queues):
            for stats in queues.list():
                yield name, stats


def queue_metrics(broker: Broker) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    gauges = [
        (field, GaugeMetricFamily(f"minibroker_queue_{field}", text, labels=LABELS))
        for field, text in GAUGES
    ]
    counters = [
        (field, CounterMetricFamily(f"minibroker_queue_{field}", text, labels=LABELS))
        for field, text in COUNTERS
    ]
    for namespace, stats in _all_queues(broker):
        labels = [namespace, stats.name]
        for field, gauge in gauges:
            gauge.add_metric(labels, getattr(stats, field))
        for field, counter in counters:
            counter.add_metric(labels, getattr(stats, field))
    for _, gauge in gauges:
        yield gauge
    for _, counter in counters:
        yield counter

