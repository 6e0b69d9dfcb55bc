"""Prometheus families for request/reply, built from the core's plain counters.

One of ``METRIC_SOURCES``, the list in server/metrics.py.
Counters are summed over namespaces; latency histograms are merged
per subject, and the label set stays bounded: at most
``MAX_TRACKED_SUBJECTS`` subjects keep their own series (the busiest), the
rest are folded into ``subject="_other"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from minibroker.core.broker import Broker
from minibroker.core.histogram import LatencyHistogram
from minibroker.core.rpc import RequestRouter
from minibroker.core.rpc_stats import LATENCY_BUCKETS, MAX_TRACKED_SUBJECTS, OTHER_SUBJECT, OUTCOMES

if TYPE_CHECKING:
    from prometheus_client.core import Metric


def _routers(broker: Broker) -> Iterator[RequestRouter]:
    for namespace in broker.namespaces.values():
        router = getattr(namespace, "rpc", None)
        if isinstance(router, RequestRouter):
            yield router


def rpc_metrics(broker: Broker) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    routers = list(_routers(broker))
    outcomes = dict.fromkeys(OUTCOMES, 0)
    dropped = rerouted = responders = pending = 0
    latency: dict[str, LatencyHistogram] = {}
    for router in routers:
        stats = router.stats
        for outcome, count in stats.outcomes.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
        dropped += stats.replies_dropped
        rerouted += stats.rerouted
        snapshot = router.snapshot()
        responders += snapshot.responders
        pending += snapshot.pending
        for subject, histogram in stats.latency.items():
            merged = latency.get(subject)
            if merged is None:
                merged = latency[subject] = LatencyHistogram(LATENCY_BUCKETS)
            merged.merge(histogram)

    requests = CounterMetricFamily(
        "minibroker_rpc_requests",
        "Requests by how they ended (ok, error, timeout, no_responders, responder_gone, abandoned)",
        labels=["outcome"],
    )
    for outcome, count in outcomes.items():
        requests.add_metric([outcome], count)
    yield requests
    yield CounterMetricFamily(
        "minibroker_rpc_replies_dropped",
        "Replies that found no waiting request (late, duplicate or unknown rid)",
        value=dropped,
    )
    yield CounterMetricFamily(
        "minibroker_rpc_rerouted",
        "Requests handed to another responder because theirs left before receiving them",
        value=rerouted,
    )
    yield GaugeMetricFamily("minibroker_rpc_responders", "Registered responders", value=responders)
    yield GaugeMetricFamily("minibroker_rpc_pending", "Requests waiting for a reply", value=pending)
    histogram_family = HistogramMetricFamily(
        "minibroker_rpc_latency_seconds",
        "Time from a request's arrival to its reply's (answered requests only), by subject",
        labels=["subject"],
    )
    for subject, histogram in sorted(_bounded(latency).items()):
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), histogram.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        histogram_family.add_metric([subject], buckets, histogram.total)
    yield histogram_family


def _bounded(latency: dict[str, LatencyHistogram]) -> dict[str, LatencyHistogram]:
    """Keep the busiest subjects' series; fold the rest into ``_other``."""
    if len(latency) <= MAX_TRACKED_SUBJECTS:
        return latency
    ranked = sorted(latency.items(), key=lambda item: item[1].count, reverse=True)
    kept = dict(ranked[: MAX_TRACKED_SUBJECTS - 1])
    other = kept.pop(OTHER_SUBJECT, None) or LatencyHistogram(LATENCY_BUCKETS)
    for _subject, histogram in ranked[MAX_TRACKED_SUBJECTS - 1 :]:
        other.merge(histogram)
    kept[OTHER_SUBJECT] = other
    return kept

