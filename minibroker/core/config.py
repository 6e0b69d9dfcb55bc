"""Settings the core honours. Plain values; the CLI and embedding APIs fill them in."""

from __future__ import annotations

from typing import Literal

from minibroker.value_class import Value, field

FsyncPolicy = Literal["always", "batch", "never"]


class Limits(Value, frozen=True):
    """Protective ceilings; each one, when hit, gives the client a clear error."""

    #: Largest message body (queue, topic, log record, request, reply).
    max_message_bytes: int = 8 * 1024 * 1024
    #: Most messages or records in one batch frame.
    max_batch: int = 100_000
    #: Push subscriptions (topics, tails, responders) one connection may hold.
    max_subscriptions_per_connection: int = 10_000
    #: Requests one connection may have waiting for replies.
    max_pending_requests_per_connection: int = 100_000
    #: Largest topic subscription buffer a client may ask for.
    max_subscription_buffer: int = 1_000_000
    #: Bytes of topic messages buffered for one connection, over all its
    #: subscriptions; also the largest ``buffer_bytes`` one may ask for.
    max_topic_buffer_bytes_per_connection: int = 64 * 1024 * 1024
    #: Longest long-poll wait and request timeout, in seconds.
    max_wait_seconds: float = 3600.0
    #: Most messages one fetch may return.
    max_fetch: int = 100_000
    #: Bytes one item (a delivery, a pushed message or request, a reply) may
    #: take in an outgoing frame: the front end's frame budget. A message that
    #: could not be sent in one frame is refused on the way in (``too_large``)
    #: rather than accepted and stuck. None: no frame limit.
    max_item_bytes: int | None = None
    # Counts of what clients make the broker keep (docs/operations.md, "Object
    # limits"). Each is checked when something is created, never at recovery:
    # a data directory holding more than a lowered limit still starts, and
    # only further creations are refused (``limit_exceeded``). The defaults
    # are far above what a test suite or a normal application makes, and low
    # enough that one client cannot take the node's memory or open files.
    #: Queues in one namespace (RabbitMQ's vhost ``max-queues``). A queue
    #: costs about 3 KiB of memory empty, so 10,000 are about 33 MB.
    max_queues_per_namespace: int = 10_000
    #: Logs in one namespace; each Kafka partition is one log. A durable log
    #: keeps open files, and Kafka's own guidance is a few thousand partitions
    #: per broker, so 10,000 is already a lot for one node.
    max_logs_per_namespace: int = 10_000
    #: Topic bindings (queue, pattern) in one namespace, AMQP exchange
    #: bindings included: each is a few trie nodes, and every publish walks them.
    max_bindings_per_namespace: int = 100_000
    #: Consumer groups with a committed offset, over the logs of one namespace
    #: (Kafka's committed offsets too): each is kept and journaled forever.
    max_groups_per_namespace: int = 10_000
    #: Queues in the whole broker, over every namespace (RabbitMQ's
    #: ``cluster_queue_limit``): about 330 MB of empty queues.
    max_queues_total: int = 100_000
    #: Logs in the whole broker: a durable log holds two open files, and
    #: Kafka's guidance for one broker is a few thousand partitions.
    max_logs_total: int = 20_000
    #: AMQP exchanges in one vhost (namespace), the predeclared ones included.
    max_exchanges_per_namespace: int = 10_000
    #: Namespaces in the whole broker: per-namespace limits bound nothing if
    #: namespaces themselves can be made without end (any hello, HTTP request
    #: or AMQP vhost makes one). At the limit, namespaces that are empty and
    #: unused are forgotten to make room before a new one is refused.
    max_namespaces: int = 10_000


class CoreConfig(Value, frozen=True):
    limits: Limits = field(default_factory=Limits)
    #: ``always``: fsync each write before confirming; ``batch``: group commit
    #: (one fsync covers every write that arrived while the last one ran);
    #: ``never``: leave it to the OS page cache.
    fsync: FsyncPolicy = "batch"
