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

from typing import Final

from minibroker.core.histogram import SUBSECOND_BUCKETS, LatencyHistogram
from minibroker.value_class import Value, field

#: Upper bounds (seconds) of the latency buckets; the last bucket is +Inf.
#: Loopback request/reply sits near 100-300 µs, so the low end is fine-grained.
LATENCY_BUCKETS: Final[tuple[float, ...]] = (*SUBSECOND_BUCKETS, 2.5, 5.0, 10.0)

#: Most subjects given their own latency histogram per namespace.
MAX_TRACKED_SUBJECTS: Final = 256
#: Label used for every subject beyond the cap.
OTHER_SUBJECT: Final = "_other"

#: Every way a request can end; the keys of :attr:`RpcStats.outcomes`.
#: ``abandoned`` means the requester disconnected before the request ended;
#: ``unread`` that its reply was dropped because it was not reading (core/rpc.py).
OUTCOMES: Final[tuple[str, ...]] = (
    "ok",
    "error",
    "timeout",
    "no_responders",
    "responder_gone",
    "abandoned",
    "unread",
)


class RpcStats(Value):
    """Everything the request/reply model counts, for one namespace."""

    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    #: Replies that found no waiting request (late, duplicate or unknown rid),
    #: or a requester that was not reading (outcome ``unread``).
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
                histogram = self.latency[subject] = LatencyHistogram(LATENCY_BUCKETS)
        histogram.observe(seconds)
