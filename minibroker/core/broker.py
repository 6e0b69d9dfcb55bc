"""The broker core: namespaces of queues, topics, logs and responders.

Everything here is synchronous and deterministic. The Trio shell calls in
with plain values and the current time (``now``, seconds on the Trio clock);
the core answers with plain values, calls the ``Peer`` port of the
connections involved, and arms deadlines in ``Timers``.

A *namespace* is an isolated set of names, like a RabbitMQ virtual host: a
connection picks one in its hello, and nothing it declares is visible from
another namespace. The test fixtures give every test a fresh namespace on one
shared broker, so tests never see each other's queues.
"""

from __future__ import annotations

from minibroker.core.config import CoreConfig
from minibroker.core.durability import Durability
from minibroker.core.namespace import MemoryLogFactory, Namespace, StorageOpener
from minibroker.core.peer import Peer
from minibroker.core.timers import Timers
from minibroker.core.xray import Xray
from minibroker.errors import InvalidName, LimitExceeded, NotFound
from minibroker.log_store import LogStore
from minibroker.value_class import Value, field

DEFAULT_NAMESPACE = ""
MAX_NAMESPACE_LENGTH = 128
#: Rounds of ``Timers.fire_due`` one ``Broker.on_time`` call runs at most.
MAX_TIMER_ROUNDS = 100


class Clock(Value):
    """Converts the monotonic ``now`` the shell passes in to wall-clock time.

    Timestamps users see (publish time, log record time) are milliseconds
    since the Unix epoch. The shell fixes ``epoch_offset`` once at start-up
    (``time.time() - trio.current_time()``), so wall time advances with the
    Trio clock, and a MockClock moves both together in tests.
    """

    epoch_offset: float = 0.0
    _last_ms: int = field(default=0, repr=False)

    @property
    def last_ms(self) -> int:
        """The latest wall-clock time handed out, for records that need no fresher one."""
        return self._last_ms

    def wall_ms(self, now: float) -> int:
        """Milliseconds since the epoch, never going backwards."""
        ms = int((now + self.epoch_offset) * 1000)
        if ms < self._last_ms:
            ms = self._last_ms
        self._last_ms = ms
        return ms


class Broker:
    """The whole broker state; one instance per server or embedded broker.

    The shell hands the core its storage, so the core never names a concrete
    store: ``storage`` opens durable stores (a data directory), and
    ``memory_log`` makes the store of a log kept in memory (every log when
    there is no ``storage``). A broker without ``memory_log`` serves
    queues, topics and requests, and refuses to create an in-memory log.
    """

    def __init__(
        self,
        config: CoreConfig | None = None,
        *,
        storage: StorageOpener | None = None,
        memory_log: MemoryLogFactory | None = None,
        epoch_offset: float = 0.0,
    ) -> None:
        self.config = config or CoreConfig()
        self.timers = Timers()
        self.clock = Clock(epoch_offset)
        self.storage = storage
        self._memory_log = memory_log
        self._namespaces: dict[str, Namespace] = {}
        #: The fsync policy and the confirmations waiting for a sync (models
        #: report their writes to it, the shell syncs it): core/durability.py.
        self.durability = Durability(
            self.config.fsync if storage is not None else "never", self.sync_storage
        )
        #: The x-ray tracer when tracing is on (core/xray.py); None costs one check per request.
        self.xray: Xray | None = None
        #: Queues and logs in every namespace, kept by Queues and Logs as they
        #: add and remove them: what ``max_queues_total`` and ``max_logs_total``
        #: bound. Counters, not sums over the namespaces, so that a broker
        #: holding thousands of namespaces does not pay for each at every declare.
        self.queue_total = 0
        self.log_total = 0

    # ------------------------------------------------------------ namespaces

    def namespace(self, name: str = DEFAULT_NAMESPACE, *, recovering: bool = False) -> Namespace:
        """The namespace called ``name``, created (and recovered from disk) on first use.

        A new one counts against ``limits.max_namespaces`` (LimitExceeded),
        except at start-up (``recovering``): a data directory that holds more
        namespaces than the limit still opens all of them.
        """
        ns = self._namespaces.get(name)
        if ns is None:
            check_namespace_name(name)
            if not recovering:
                self._make_room_for_namespace(name)
            ns = Namespace(name, self)
            self._namespaces[name] = ns
        return ns

    def _make_room_for_namespace(self, name: str) -> None:
        """Refuse a new namespace past ``max_namespaces``, after forgetting the idle ones.

        Any hello or HTTP request names a namespace, so the cap alone would
        let one client use up every slot with throwaway names and lock out
        everyone else. An idle namespace (no connection in it, nothing
        declared, no front-end state) costs nothing to make again, so those
        are forgotten first; only namespaces in use count against the limit.
        """
        limit = self.config.limits.max_namespaces
        if len(self._namespaces) < limit:
            return
        for idle in [key for key, ns in self._namespaces.items() if ns.is_idle()]:
            del self._namespaces[idle]
        if len(self._namespaces) >= limit:
            raise LimitExceeded(
                f"cannot create namespace {name!r}: namespace limit ({limit}) is reached",
                limit=limit,
            )

    def join(self, name: str, peer: Peer) -> Namespace:
        """The namespace a connection chose at hello, which now counts it as its own."""
        ns = self.namespace(name)
        ns.peers[peer.conn_id] = peer
        return ns

    def find_namespace(self, name: str) -> Namespace | None:
        """The namespace called ``name`` if it exists (creates nothing)."""
        return self._namespaces.get(name)

    @property
    def namespaces(self) -> dict[str, Namespace]:
        return dict(self._namespaces)

    def drop_namespace(self, name: str) -> bool:
        """Delete a namespace and everything in it, durable files included.

        Every connection still in it is closed (told why): a connection left
        on a deleted namespace would go on declaring into a copy nobody else
        sees. The next hello naming it starts an empty one. Returns False if
        there was nothing to drop. This is how the test fixtures clean up a
        test's namespace, so a long session does not grow without bound.
        """
        check_namespace_name(name)
        existed = name in self._namespaces
        # Open it if only its files exist (after a restart), so they go too.
        ns = self.namespace(name, recovering=True) if self.storage is not None or existed else None
        if ns is None:
            return False
        del self._namespaces[name]
        for peer in list(ns.peers.values()):
            peer.kick(NotFound(f"namespace {name!r} was dropped", namespace=name))
        existed = existed or not ns.is_empty()
        ns.destroy()
        if self.storage is not None:
            self.storage.remove_namespace(name)
        return existed

    # ----------------------------------------------------------- connections

    def disconnect(self, peer: Peer, namespace: Namespace, now: float) -> None:
        """A connection closed: requeue its deliveries, drop its subscriptions."""
        namespace.disconnect(peer, now)

    # ----------------------------------------------------------------- time

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def on_time(self, now: float) -> int:
        """Fire every deadline that is due at ``now``; returns how many fired.

        A timer may arm another that is already due (a lease expiry requeues
        a message whose TTL passed meanwhile), so this fires in rounds until
        nothing due is left, but at most ``MAX_TIMER_ROUNDS`` of them: a timer
        that re-arms itself at ``now`` forever is then left for the next
        call, and the shell serves its connections in between.
        """
        fired = 0
        for _ in range(MAX_TIMER_ROUNDS):
            count = self.timers.fire_due(now)
            if not count:
                break
            fired += count
        return fired

    # ----------------------------------------------------------- storage

    def new_memory_log(self, segment_bytes: int | None) -> LogStore:
        """An empty in-memory store from the factory the shell injected."""
        if self._memory_log is None:
            raise RuntimeError(
                "this Broker has no in-memory log store: "
                "build it with Broker(memory_log=...) (minibroker.storage.MemoryLog)"
            )
        return self._memory_log(segment_bytes)

    # ----------------------------------------------------------- durability

    def sync_storage(self) -> None:
        """fsync every store with unsynced writes (on the calling thread).

        The storage step of ``durability``; call ``durability.sync()`` to
        sync and also release the confirmations waiting for it."""
        for ns in list(self._namespaces.values()):
            ns.sync()

    def close(self) -> None:
        """Flush and close all storage (graceful shutdown), then release the
        storage itself (a data directory's lock), if it has anything to release."""
        for ns in list(self._namespaces.values()):
            ns.close()
        release = getattr(self.storage, "close", None)
        if release is not None:
            release()


def check_namespace_name(name: str) -> None:
    """ASCII letters and digits, ``-``, ``_``, ``.``: a namespace travels in
    URLs, AMQP vhosts and data directory names, where other scripts' letters
    would have look-alike spellings (composed and decomposed accents)."""
    if len(name) > MAX_NAMESPACE_LENGTH:
        raise InvalidName(f"namespace is longer than {MAX_NAMESPACE_LENGTH} characters")
    for ch in name:
        if not ((ch.isascii() and ch.isalnum()) or ch in "-_."):
            raise InvalidName(
                f"namespace {name!r} may only contain ASCII letters, digits, '-', '_' and '.'"
            )
