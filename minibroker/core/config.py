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


class CoreConfig(Value, frozen=True):
    limits: Limits = field(default_factory=Limits)
    #: ``always``: fsync each write before confirming; ``batch``: group commit
    #: (one fsync covers every write that arrived while the last one ran);
    #: ``never``: leave it to the OS page cache.
    fsync: FsyncPolicy = "batch"
