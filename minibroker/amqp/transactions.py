"""Tx.Select / Commit / Rollback: a channel's publishes and settlements held until commit.

A transactional channel checks each publish as it comes (the exchange must
exist, the login may write to it: errors close the channel at once, as in
RabbitMQ) and then holds it; acks, nacks and rejects are checked against the
channel's unacked deliveries and held too, their deliveries set aside so a
second ack of the same tag is refused. Commit routes the held publishes in
order (mandatory ones with no route are returned then) and applies the held
settlements; Tx.CommitOk goes out after the group commit's fsync when a
durable queue took a message, like a publisher confirm. Rollback drops the
publishes and gives the set-aside deliveries back, unacked.

What a transaction holds is bounded per connection (the same budget as
bodies being received, ``AmqpSettings.max_content_in_progress``): a
transaction that would hold more closes its channel with 406, and nothing
of it is applied. As in RabbitMQ, a commit is not atomic across queues: a
storage failure in the middle leaves the messages routed before it. A full
disk holds the commit instead, as it holds a publish, until every publish of
it is stored (``minibroker/amqp/channel.py::Channel._commit_from``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pamqp import commands

#: What a held delivery is (the channel's ``Unacked``); kept opaque here.
D = TypeVar("D")

#: Bytes a held publish costs besides its body and properties (its method, the lists).
PUBLISH_OVERHEAD = 128


@dataclass(slots=True)
class HeldPublish:
    method: commands.Basic.Publish
    properties: bytes
    body: bytes

    @property
    def size(self) -> int:
        return len(self.body) + len(self.properties) + PUBLISH_OVERHEAD


@dataclass(slots=True)
class Transaction(Generic[D]):
    """What one transactional channel holds until its next commit or rollback."""

    publishes: list[HeldPublish] = field(default_factory=list)
    #: (deliveries set aside by delivery tag, "ack" / "requeue" / "drop"), in order.
    settlements: list[tuple[dict[int, D], str]] = field(default_factory=list)
    #: Bytes held (counted against the connection's budget).
    size: int = 0

    def set_aside(self) -> dict[int, D]:
        """Every delivery the held settlements set aside (for a rollback or a close)."""
        aside: dict[int, D] = {}
        for deliveries, _ in self.settlements:
            aside.update(deliveries)
        return aside
