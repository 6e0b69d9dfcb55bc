"""One snapshot of everything the dashboard shows, as plain JSON values.

Queues (ready, in flight, delayed, consumers and the counters rates are
computed from), topics (subscriptions with their pattern, group, buffer and
drops; bindings), logs (offsets, bytes, segments, each consumer group's
lag) and request/reply (responders and pending requests, in all and per
subject), for every namespace.
Connections are the shell's, so the adapter adds them.

Counters, not rates: a rate needs two snapshots, and the page has them
(it divides the difference by the time between two events), so the broker
keeps no history per queue for the dashboard's sake.

With a permissions file in force, ``visible(kind, name)`` keeps out what
the principal has no grant on, as the list operations do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from minibroker.core.broker import Broker
from minibroker.core.namespace import Namespace
from minibroker.value_class import asdict

Visible = Callable[[str, str], bool]


def _everything(kind: str, name: str) -> bool:
    return True


def overview(broker: Broker, now: float, visible: Visible = _everything) -> dict[str, Any]:
    """The whole broker at ``now``, namespace by namespace (empty namespaces left out)."""
    namespaces = []
    for name, ns in sorted(broker.namespaces.items()):
        section = namespace_overview(ns, now, visible)
        if any(section[key] for key in ("queues", "subscriptions", "bindings", "logs")) or (
            section["rpc"]["responders"] or section["rpc"]["pending"]
        ):
            namespaces.append({"namespace": name, **section})
    return {"namespaces": namespaces}


def namespace_overview(ns: Namespace, now: float, visible: Visible = _everything) -> dict[str, Any]:
    queues = []
    for stats in ns.queues.list():
        if visible("queue", stats.name):
            entry = asdict(stats)
            entry["queue"] = entry.pop("name")
            queues.append(entry)
    subscriptions = [
        {
            "sub": sub.sub_id,
            "connection": sub.peer.conn_id,
            "pattern": sub.pattern,
            "group": None if sub.group is None else sub.group.name,
            "buffered": len(sub.items),
            "buffer": sub.buffer,
            "dropped": sub.dropped,
        }
        for sub in ns.topics.subscriptions()
        if visible("topic", sub.pattern)
    ]
    bindings = [
        {"queue": queue, "pattern": pattern}
        for queue, pattern in ns.topics.bindings()
        if visible("queue", queue)
    ]
    logs = []
    for log_stats in ns.logs.all_statistics():
        if visible("log", log_stats.name):
            logs.append(log_stats.to_dict())
    topic_stats = ns.topics.stats
    return {
        "queues": queues,
        "topics": {
            "published": topic_stats.published,
            "delivered": topic_stats.delivered,
            "dropped": topic_stats.dropped,
            "unrouted": topic_stats.unrouted,
        },
        "subscriptions": subscriptions,
        "bindings": bindings,
        "logs": logs,
        "rpc": {
            **asdict(ns.rpc.snapshot()),
            "by_subject": [
                asdict(subject)
                for subject in ns.rpc.subjects(now)
                if visible("subject", subject.subject)
            ],
        },
    }
