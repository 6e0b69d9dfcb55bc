"""A namespace: one isolated set of queues, topics, logs and responders.

Each messaging model lives in its own module and owns its own state; the
namespace only holds one instance of each and fans connection-level events
(disconnect, fsync, close) out to them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeAlias, TypeVar

from minibroker.core.logs import Logs
from minibroker.core.peer import Peer
from minibroker.core.queues import Queues
from minibroker.core.rpc import RequestRouter
from minibroker.core.state_journal import KIND as STATE_KIND
from minibroker.core.state_journal import SEGMENT_BYTES as STATE_SEGMENT_BYTES
from minibroker.core.state_journal import StateJournal
from minibroker.core.topics import Topics
from minibroker.log_store import LogStore

if TYPE_CHECKING:
    from minibroker.core.broker import Broker

#: Makes an empty in-memory store for a log kept without a data directory;
#: ``None`` asks for the store's default segment size. Injected by the shell
#: (``Broker(memory_log=MemoryLog)``) for the same reason as StorageOpener:
#: the core names no concrete store.
MemoryLogFactory: TypeAlias = Callable[[int | None], LogStore]


class StorageOpener(Protocol):
    """Opens durable stores; injected by the shell so the core does no file I/O itself.

    ``kind`` is "log" or "queue"; names are the namespace's own names.
    """

    def open(self, namespace: str, kind: str, name: str, *, segment_bytes: int | None) -> LogStore:
        """Open (recovering if it exists) or create the store for ``name``."""
        ...

    def existing(self, namespace: str, kind: str) -> list[str]:
        """Names of the stores of this kind that exist on disk."""
        ...

    def remove(self, namespace: str, kind: str, name: str) -> None:
        """Delete a store's files."""
        ...

    def remove_namespace(self, namespace: str) -> None:
        """Delete what is left of a namespace on disk, so a restart does not revive it."""
        ...


class Model(Protocol):
    """What every messaging model offers the namespace."""

    def disconnect(self, peer: Peer, now: float) -> None:
        """Forget or hand back everything ``peer`` held."""

    def sync(self) -> None:
        """fsync pending durable writes."""

    def close(self) -> None:
        """Flush and close storage; the model is not used afterwards."""

    def destroy(self) -> None:
        """Close and remove everything, including files (namespace dropped)."""


M = TypeVar("M", bound=Model)


class Namespace:
    def __init__(self, name: str, broker: Broker) -> None:
        self.name = name
        self.broker = broker
        #: The connections in this namespace (conn_id -> peer), so dropping it
        #: can close them instead of leaving them on a detached namespace.
        self.peers: dict[int, Peer] = {}
        self.models: list[Model] = []
        #: Work queues (first: topics bind to queues, and recovery runs here).
        self.queues = Queues(self)
        self.models.append(self.queues)
        #: Topics: push subscriptions, groups, bindings into the queues above.
        self.topics = Topics(self)
        self.models.append(self.topics)
        #: Request/reply: responders, pending requests, deadlines.
        self.rpc = RequestRouter(self)
        self.models.append(self.rpc)
        #: Logs: append-only, offset-addressed, replayable (recovered from disk here).
        self.logs = Logs(self)
        self.models.append(self.logs)

        #: State that a front end keeps per namespace (AMQP exchanges ...), by key.
        self._extensions: dict[str, Model] = {}

    def extension(self, key: str, make: Callable[[Namespace], M]) -> M:
        """The front-end state ``key`` of this namespace, made by ``make`` on first use.

        It joins the namespace's models, so it hears of disconnects, syncs,
        closes and the namespace's destruction like the built-in models, and
        goes away with the namespace (a test's vhost is dropped with it).
        """
        found = self._extensions.get(key)
        if found is None:
            found = self._extensions[key] = make(self)
            self.models.append(found)
            if self.broker.durability.policy == "always":
                # What it wrote while it was made (an AMQP vhost drops stale
                # entries as it recovers) was reported before it was one of
                # the models the write's own sync walks: sync it now.
                found.sync()
        return found  # type: ignore[return-value]

    def state_journal(self, name: str) -> StateJournal | None:
        """The durable state ``name`` a front end keeps in this namespace (replayed
        from disk), or None when the broker has no data directory.

        The front end owns the journal from then on: it syncs, closes and
        destroys it from its own ``Model`` methods.
        """
        storage = self.broker.storage
        if storage is None:
            return None
        namespace = self.name

        def open_store() -> LogStore:
            return storage.open(namespace, STATE_KIND, name, segment_bytes=STATE_SEGMENT_BYTES)

        exists = name in storage.existing(namespace, STATE_KIND)
        return StateJournal(open_store, self.broker.durability.written, exists=exists)

    def has_state(self, name: str) -> bool:
        """True when a front end's state ``name`` exists on disk for this namespace."""
        storage = self.broker.storage
        return storage is not None and name in storage.existing(self.name, STATE_KIND)

    def disconnect(self, peer: Peer, now: float) -> None:
        self.peers.pop(peer.conn_id, None)
        for model in self.models:
            model.disconnect(peer, now)

    def is_empty(self) -> bool:
        """Nothing declared in it (queues, logs, bindings, subscriptions, responders)."""
        return (
            not self.queues.names()
            and not self.logs.names()
            and self.topics.subscription_count == 0
            and self.rpc.responder_count() == 0
        )

    def is_idle(self) -> bool:
        """No connection in it, nothing declared and no front-end state: the broker
        may forget it (core/broker.py), and would make the same one again."""
        return not self.peers and not self._extensions and self.is_empty()

    def sync(self) -> None:
        for model in self.models:
            model.sync()

    def close(self) -> None:
        for model in self.models:
            model.close()

    def destroy(self) -> None:
        for model in self.models:
            model.destroy()
