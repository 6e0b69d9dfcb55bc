"""What only the SQS layer keeps about a queue, kept across restarts.

A queue's messages and core options (visibility timeout, retention,
redrive) are the core's and are journaled by it. The rest of an SQS queue
(``QueueSettings``: FifoQueue, ContentBasedDeduplication and the other FIFO
attributes, DelaySeconds, ReceiveMessageWaitTimeSeconds,
MaximumMessageSize, Policy, RedriveAllowPolicy, tags, timestamps) is kept
here, on a broker with a data directory, for durable queues only (a
non-durable queue does not come back, so neither do its settings).

Each queue has a small journal of its own beside the core's (store kind
``sqs-queue``, so ``namespaces/<ns>/sqs-queues/<queue>/``), opened through the
same storage opener the core uses. A change appends the whole settings as
one JSON record and fsyncs it before the request is answered; the last
record is the state; old segments are dropped as the journal rolls.
Settings change on CreateQueue, SetQueueAttributes and Tag/UntagQueue, never
per message, so opening the journal per change costs nothing that matters.
Dropping a namespace removes its directory, journals included.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from minibroker.core.namespace import StorageOpener
from minibroker.sqs.attributes import QueueSettings

log = logging.getLogger("minibroker.sqs")

KIND: Final = "sqs-queue"
FORMAT: Final = 1
#: Segment size of a settings journal: small, so rolled segments go soon.
SEGMENT_BYTES: Final = 64 * 1024


class SettingsStore:
    """Saves and loads ``QueueSettings`` through the broker's storage."""

    def __init__(self, storage: StorageOpener) -> None:
        self._storage = storage

    def save(self, namespace: str, queue: str, settings: QueueSettings, timestamp_ms: int) -> None:
        """Journal ``settings`` durably (fsynced); StorageError/StorageFull if not."""
        body = json.dumps(_to_json(settings), separators=(",", ":"), sort_keys=True).encode()
        store = self._storage.open(namespace, KIND, queue, segment_bytes=SEGMENT_BYTES)
        try:
            store.append([(None, None, body)], timestamp_ms)
            store.sync()
            if store.segment_count > 1:
                store.enforce_retention(timestamp_ms, retention_bytes=0, retention_ms=None)
        finally:
            store.close()

    def forget(self, namespace: str, queue: str) -> None:
        self._storage.remove(namespace, KIND, queue)

    def load(self, namespace: str) -> dict[str, QueueSettings]:
        """The saved settings of every queue in ``namespace`` (damaged ones are skipped)."""
        found: dict[str, QueueSettings] = {}
        for queue in self._storage.existing(namespace, KIND):
            store = self._storage.open(namespace, KIND, queue, segment_bytes=SEGMENT_BYTES)
            try:
                last = None
                for record in store.iter_records():
                    last = record.body
                if last is not None:
                    found[queue] = _from_json(json.loads(last))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning(
                    "SQS settings of queue %r (namespace %r) unreadable, defaults apply: %s",
                    queue,
                    namespace,
                    exc,
                )
            finally:
                store.close()
        return found


def _to_json(settings: QueueSettings) -> dict[str, Any]:
    return {
        "v": FORMAT,
        "created": settings.created,
        "modified": settings.modified,
        "delay_seconds": settings.delay_seconds,
        "receive_wait_seconds": settings.receive_wait_seconds,
        "maximum_message_size": settings.maximum_message_size,
        "stored": settings.stored,
        "tags": settings.tags,
        "fifo": settings.fifo,
    }


def _from_json(raw: dict[str, Any]) -> QueueSettings:
    if raw.get("v") != FORMAT:
        raise ValueError(f"unknown format {raw.get('v')!r}")
    stored, tags = raw["stored"], raw["tags"]
    if not all(isinstance(v, str) for v in (*stored.values(), *tags.values())):
        raise ValueError("stored attributes and tags must be strings")
    return QueueSettings(
        created=int(raw["created"]),
        modified=int(raw["modified"]),
        delay_seconds=int(raw["delay_seconds"]),
        receive_wait_seconds=int(raw["receive_wait_seconds"]),
        maximum_message_size=int(raw["maximum_message_size"]),
        stored=dict(stored),
        tags=dict(tags),
        fifo=raw["fifo"] is True,
    )
