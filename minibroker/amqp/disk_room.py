"""A publish the full disk refused in some of its queues, until they all have it.

RabbitMQ's disk alarm blocks a publisher before its message is routed, so a
message is never in some of its queues and not in the others. minibroker
learns that the disk is full while routing: a durable queue's journal write
is refused (StorageFull), after the queues routed before it (a transient
queue, which needs no disk; a durable queue written before the disk filled)
took the message. Routing goes on to the other queues, and the queues that
refused it are collected (``minibroker.core.topics.NoRoom``: each with the
copy exactly as it was to store it, so a topic exchange's copy keeps its
topic header). The channel holds the publish as a :class:`WaitingPublish`
and the connection waits for room (``AmqpSession.wait_for_room``); each retry
puts the copies into the queues still missing them, and no other: routing
the whole message again would give the queues that took it a second copy on
every retry. The connection is read no further meanwhile, so its later
publishes reach every queue after this one, in order.

The publisher's answer waits too: a Basic.Return (mandatory, no queue) and,
in confirm mode, the Basic.Ack once every queue has the message, never
before (``minibroker/amqp/channel.py::Channel._routed``).

While any connection waits so, the disk is full for every publisher, as
under RabbitMQ's disk alarm: :class:`DiskFull`, shared by the server's AMQP
sessions, makes every other connection stop reading after its next
Basic.Publish, before routing it (Connection.Blocked "low on disk"), until
the waiting publishes are through; then they are read again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pamqp import commands

from minibroker.core.topics import NoRoom

if TYPE_CHECKING:
    from minibroker.amqp.connection import AmqpSession
    from minibroker.amqp.vhost import Vhost


@dataclass(slots=True)
class WaitingPublish:
    """A routed publish some of whose queues (``no_room``) the full disk refused."""

    publish: commands.Basic.Publish
    #: The content header's property bytes as routed (reply_to rewritten).
    properties: bytes
    body: bytes
    #: Its publisher-confirm sequence number (0: the channel does not confirm).
    seq: int
    #: ``broker.durability.generation`` before it was routed: its confirm
    #: waits for the fsync when a durable queue took it since.
    generation: int
    ttl: float | None
    priority: int | None
    #: Queues (and native subscribers) that took it so far, and full queues that refused it.
    taken: int
    refused: int
    no_room: list[NoRoom]

    def put_again(self, vhost: Vhost, now: float) -> bool:
        """Give the message to the queues that still miss it; True once none does.

        Raises BrokerError (a disk that fails rather than fills) as routing does.
        """
        still: list[NoRoom] = []
        taken, refused = vhost.put_again(self.no_room, now, self.ttl, self.priority, still)
        self.taken += taken
        self.refused += refused
        self.no_room = still
        return not still


@dataclass(slots=True, eq=False)
class DiskFull:
    """The full disk as every AMQP session of a server sees it.

    ``waiting``: sessions holding a publish the disk refused (each retries
    it); while there is one, the disk counts as full. ``blocked``: sessions
    stopped before routing a publish meanwhile, read again once ``waiting``
    is empty (the last waiting publish went through, or its connection
    went away: then the next publisher finds out for itself).
    """

    waiting: set[AmqpSession] = field(default_factory=set)
    blocked: set[AmqpSession] = field(default_factory=set)

    def done(self, session: AmqpSession) -> None:
        """``session`` holds no refused publish any more."""
        self.waiting.discard(session)
        if not self.waiting and self.blocked:
            sessions, self.blocked = self.blocked, set()
            for each in sessions:
                each.disk_room_again()
