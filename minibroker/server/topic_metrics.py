"""Prometheus families for topics, built from the core's plain counters at scrape time.

One of ``METRIC_SOURCES``, the list in server/metrics.py.
Every family is summed over namespaces, so the label set stays
bounded however many namespaces (one per test, say) a broker has seen; the
publish path itself only bumps ints in :class:`~minibroker.core.topics.TopicStats`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from minibroker.core.broker import Broker
from minibroker.core.topics import Topics, TopicStats

if TYPE_CHECKING:
    from prometheus_client.core import Metric

#: (TopicStats field, metric name, help) for every counter.
_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("published", "minibroker_topic_published", "Messages published to topics"),
    (
        "unrouted",
        "minibroker_topic_unrouted",
        "Published messages that matched no subscription and no queue binding",
    ),
    (
        "routed",
        "minibroker_topic_routed",
        "Message copies buffered for subscriptions (one per subscription, one per group)",
    ),
    (
        "delivered",
        "minibroker_topic_delivered",
        "Message copies written to subscribers' connections",
    ),
    (
        "dropped",
        "minibroker_topic_dropped",
        "Message copies dropped for slow subscribers (on_overflow=drop_oldest)",
    ),
    (
        "slow_consumers_kicked",
        "minibroker_topic_slow_consumers_kicked",
        "Subscribers disconnected for falling behind (on_overflow=disconnect)",
    ),
    ("enqueued", "minibroker_topic_enqueued", "Message copies put into bound queues"),
)


def _topics(broker: Broker) -> Iterator[Topics]:
    for namespace in broker.namespaces.values():
        topics = getattr(namespace, "topics", None)
        if isinstance(topics, Topics):
            yield topics


def topic_metrics(broker: Broker) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    models = list(_topics(broker))
    totals = TopicStats()
    subscriptions = groups = bindings = nodes = 0
    for topics in models:
        for name, _, _ in _COUNTERS:
            setattr(totals, name, getattr(totals, name) + getattr(topics.stats, name))
        subscriptions += topics.subscription_count
        groups += topics.group_count
        bindings += topics.binding_count
        nodes += topics.trie_nodes
    for name, metric, help_text in _COUNTERS:
        yield CounterMetricFamily(metric, help_text, value=getattr(totals, name))
    yield GaugeMetricFamily(
        "minibroker_topic_subscriptions", "Live topic subscriptions", value=subscriptions
    )
    yield GaugeMetricFamily(
        "minibroker_topic_groups", "Subscription groups with at least one member", value=groups
    )
    yield GaugeMetricFamily(
        "minibroker_topic_bindings", "Queue bindings (queue, pattern pairs)", value=bindings
    )
    yield GaugeMetricFamily(
        "minibroker_topic_trie_nodes",
        "Nodes in the subscription tries, roots included (one per namespace when empty)",
        value=nodes,
    )

