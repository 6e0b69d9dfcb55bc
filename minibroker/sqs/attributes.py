"""Queue attributes: SQS's names and ranges, onto QueueOptions plus what only SQS has.

The queue core holds what changes how messages move: VisibilityTimeout is
``visibility_timeout``, MessageRetentionPeriod is ``message_ttl``, a
RedrivePolicy is ``dead_letter_queue`` + ``max_deliveries``. What the core
has no use for (DelaySeconds applied per send, the long-poll default,
MaximumMessageSize, policies, tags, timestamps) lives in ``QueueSettings``,
kept by the front end beside the queue.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from minibroker import value_class
from minibroker.core.queue_options import QueueOptions, QueueStatistics
from minibroker.sqs.errors import (
    invalid_attribute_name,
    invalid_attribute_value,
    invalid_parameter,
)
from minibroker.sqs.fifo import Deduplicator
from minibroker.sqs.numbers import integer_of, reject_constant
from minibroker.sqs.urls import parse_arn, queue_arn

DEFAULT_RETENTION: Final = 345_600  # 4 days, as SQS
DEFAULT_MAXIMUM_MESSAGE_SIZE: Final = 262_144
#: Attributes accepted and shown back, with no effect on a broker without KMS.
_STORED_ONLY: Final = ("KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled")
#: FIFO queues' own attributes and their allowed values.
_FIFO_ONLY: Final = {
    "ContentBasedDeduplication": ("true", "false"),
    "DeduplicationScope": ("queue", "messageGroup"),
    "FifoThroughputLimit": ("perQueue", "perMessageGroupId"),
}
_RANGES: Final = {
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, 1_048_576),
    "MessageRetentionPeriod": (60, 1_209_600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "VisibilityTimeout": (0, 43_200),
}
READABLE: Final = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "DelaySeconds",
    "LastModifiedTimestamp",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "Policy",
    "QueueArn",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "VisibilityTimeout",
    *_STORED_ONLY,
)


@dataclass(slots=True)
class QueueSettings:
    """What an SQS queue has beyond its core options."""

    created: int
    modified: int
    delay_seconds: int = 0
    receive_wait_seconds: int = 0
    maximum_message_size: int = DEFAULT_MAXIMUM_MESSAGE_SIZE
    #: Policy, RedriveAllowPolicy, the KMS/SSE attributes and (FIFO queues)
    #: ContentBasedDeduplication, DeduplicationScope, FifoThroughputLimit, as given.
    stored: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: A FIFO queue (fixed at creation): groups, sequence numbers, deduplication.
    fifo: bool = False
    deduplicator: Deduplicator = field(default_factory=Deduplicator)

    @property
    def content_based_deduplication(self) -> bool:
        return self.stored.get("ContentBasedDeduplication") == "true"

    @property
    def deduplication_per_group(self) -> bool:
        return self.stored.get("DeduplicationScope") == "messageGroup"


def new_options() -> QueueOptions:
    """A queue created over SQS: SQS's defaults, and durable (SQS queues are)."""
    return QueueOptions(message_ttl=float(DEFAULT_RETENTION), durable=True)


def apply(
    attributes: Mapping[str, object],
    options: QueueOptions,
    settings: QueueSettings,
    *,
    queue: str,
    namespace: str,
    queue_exists: Callable[[str], bool],
) -> tuple[QueueOptions, QueueSettings]:
    """New options and settings with ``attributes`` applied; nothing is changed in place."""
    settings = dataclasses.replace(settings, stored=dict(settings.stored))
    changes: dict[str, object] = {}
    for name, raw in attributes.items():
        if not isinstance(raw, str):
            raw = str(raw)
        if name in _RANGES:
            value = _integer(name, raw)
            if name == "VisibilityTimeout":
                if value == 0:
                    raise invalid_attribute_value(
                        name, "minibroker needs a visibility timeout of at least 1 second."
                    )
                changes["visibility_timeout"] = float(value)
            elif name == "MessageRetentionPeriod":
                changes["message_ttl"] = float(value)
            elif name == "DelaySeconds":
                settings.delay_seconds = value
            elif name == "ReceiveMessageWaitTimeSeconds":
                settings.receive_wait_seconds = value
            else:
                settings.maximum_message_size = value
        elif name == "RedrivePolicy":
            changes.update(_redrive(raw, queue, namespace, queue_exists))
        elif name in ("Policy", "RedriveAllowPolicy", *_STORED_ONLY):
            if name == "RedriveAllowPolicy" and raw:
                _json_object(name, raw)
            if raw:
                settings.stored[name] = raw
            else:
                settings.stored.pop(name, None)
        elif name == "FifoQueue":
            if raw.lower() not in ("true", "false"):
                raise invalid_attribute_value(name, "must be true or false.")
            if (raw.lower() == "true") != settings.fifo:
                raise invalid_attribute_value(
                    name, "a queue is FIFO, with a name ending in .fifo, from its creation on."
                )
        elif name in _FIFO_ONLY:
            if not settings.fifo:
                raise invalid_attribute_name(name)
            if raw not in _FIFO_ONLY[name]:
                allowed = " or ".join(_FIFO_ONLY[name])
                raise invalid_attribute_value(name, f"must be {allowed}.")
            settings.stored[name] = raw
        else:
            raise invalid_attribute_name(name)
    return value_class.replace(options, **changes), settings


def _integer(name: str, raw: str) -> int:
    low, high = _RANGES[name]
    value = integer_of(raw)
    if value is None:
        raise invalid_attribute_value(name, f"{raw[:50]!r} is not an integer.")
    if not low <= value <= high:
        raise invalid_attribute_value(name, f"must be between {low} and {high}.")
    return value


def _json_object(name: str, raw: str) -> dict[str, object]:
    try:
        value = json.loads(raw, parse_constant=reject_constant)
    except ValueError:
        raise invalid_attribute_value(name, "is not valid JSON.") from None
    if not isinstance(value, dict):
        raise invalid_attribute_value(name, "must be a JSON object.")
    return value


def _redrive(
    raw: str, queue: str, namespace: str, queue_exists: Callable[[str], bool]
) -> dict[str, object]:
    if not raw:
        return {"dead_letter_queue": None, "max_deliveries": None}
    policy = _json_object("RedrivePolicy", raw)
    target, count = policy.get("deadLetterTargetArn"), policy.get("maxReceiveCount")
    for mandatory, value in (("deadLetterTargetArn", target), ("maxReceiveCount", count)):
        if value is None:
            raise invalid_parameter(
                "Value for parameter RedrivePolicy is invalid. Reason: Redrive policy does not "
                f"contain mandatory attribute: {mandatory}."
            )
    max_receives = integer_of(count)
    if max_receives is None or not 1 <= max_receives <= 1000:
        raise invalid_parameter(
            "Value for parameter RedrivePolicy is invalid. Reason: Invalid value for "
            "maxReceiveCount: must be between 1 and 1000."
        )
    target_namespace, target_queue = parse_arn(target)
    if target_namespace != namespace or not queue_exists(target_queue):
        raise invalid_parameter(
            "Value for parameter RedrivePolicy is invalid. Reason: Dead-letter target does "
            "not exist."
        )
    if target_queue == queue:
        raise invalid_parameter(
            "Value for parameter RedrivePolicy is invalid. Reason: a queue cannot be its own "
            "dead-letter queue."
        )
    return {"dead_letter_queue": target_queue, "max_deliveries": max_receives}


def read(
    names: list[str],
    *,
    queue: str,
    namespace: str,
    region: str,
    options: QueueOptions,
    settings: QueueSettings,
    stats: QueueStatistics,
) -> dict[str, str]:
    """GetQueueAttributes: the requested attributes (``All`` for every one) as strings.

    Attributes a queue may lack (RedrivePolicy, Policy...) are left out when
    it lacks them; names SQS does not know are InvalidAttributeName.
    """
    ttl = options.message_ttl
    values: dict[str, str | None] = {
        "ApproximateNumberOfMessages": str(stats.ready),
        "ApproximateNumberOfMessagesNotVisible": str(stats.in_flight),
        "ApproximateNumberOfMessagesDelayed": str(stats.delayed),
        "CreatedTimestamp": str(settings.created),
        "LastModifiedTimestamp": str(settings.modified),
        "DelaySeconds": str(settings.delay_seconds),
        "MaximumMessageSize": str(settings.maximum_message_size),
        "MessageRetentionPeriod": str(int(ttl) if ttl is not None else DEFAULT_RETENTION),
        "QueueArn": queue_arn(region, namespace, queue),
        "ReceiveMessageWaitTimeSeconds": str(settings.receive_wait_seconds),
        "VisibilityTimeout": str(int(options.visibility_timeout)),
        "RedrivePolicy": _redrive_policy(options, region, namespace),
        "FifoQueue": "true" if settings.fifo else None,
    }
    if settings.fifo:
        values["ContentBasedDeduplication"] = settings.stored.get(
            "ContentBasedDeduplication", "false"
        )
        values["DeduplicationScope"] = settings.stored.get("DeduplicationScope", "queue")
        values["FifoThroughputLimit"] = settings.stored.get("FifoThroughputLimit", "perQueue")
    wanted: list[str] | tuple[str, ...] = names
    if "All" in names:
        wanted = (*READABLE, "FifoQueue", *_FIFO_ONLY) if settings.fifo else READABLE
    out: dict[str, str] = {}
    for name in wanted:
        value = values[name] if name in values else settings.stored.get(name)
        if value is not None:
            out[name] = value
        elif name not in READABLE and name not in _FIFO_ONLY and name != "FifoQueue":
            raise invalid_attribute_name(name)
    return out


def _redrive_policy(options: QueueOptions, region: str, namespace: str) -> str | None:
    if options.dead_letter_queue is None or options.max_deliveries is None:
        return None
    return json.dumps(
        {
            "deadLetterTargetArn": queue_arn(region, namespace, options.dead_letter_queue),
            "maxReceiveCount": options.max_deliveries,
        },
        separators=(",", ":"),
    )
