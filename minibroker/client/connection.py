"""One connection's client state, sans-I/O: what the Trio, asyncio and blocking clients share.

The server's sessions have h11's shape (bytes in, events and bytes out, no
I/O); this is the client's half. :class:`Connection` numbers requests and
encodes them (:meth:`Connection.begin` hands back the bytes to send), keeps
the table of calls waiting for answers and the subscriptions pushes go to,
is fed the bytes the socket delivered (:meth:`Connection.receive_data`), and
fails everything at once when the connection ends (:meth:`Connection.fail`).

A transport (``trio_client.py``, ``aio.py``, ``sync.py``) keeps only the
socket, the byte pump and one wake-up primitive: its :class:`PendingCall`
subclass says how a caller waits (a Trio event, an asyncio future, a
pre-acquired lock), its subscription class how a consumer waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from minibroker.client.protocol import Call, ClientProtocol, Goodbye, Push, Reply, connection_lost
from minibroker.errors import ConnectionClosed

if TYPE_CHECKING:
    from minibroker.client.pushes import SubscriptionCore

T = TypeVar("T")
P = TypeVar("P", bound="PendingCall[Any]")
V = TypeVar("V")

#: Run with the raw result of a successful reply, on the reader, before the
#: next frame is read (a subscribe call registers its subscription this way).
Hook = Callable[[Any], None]


#: Withdrawals in protocol version 1 itself, sent to any broker (the others
#: are extensions, sent only to a broker that announces them).
BASE_WITHDRAWALS = frozenset({"fetch.cancel"})

#: The guard of single-threaded transports: nothing to exclude.
NO_GUARD: AbstractContextManager[None] = nullcontext()


class PendingCall(Generic[T]):
    """A request in flight: its answer lands here, then its caller wakes.

    A call sent with ``_begin`` is collected later with ``wait`` (each
    transport's own) and ``outcome``; that is how one task keeps several
    requests in flight (the queue consumer pipelines its fetches this way).
    ``abandon(on_result)`` stops caring about the answer: ``on_result(raw
    result)`` then runs on the reader if it arrives and succeeds (cleanup such
    as giving back what a fetch delivered after its consumer left). The
    blocking client answers on a reader thread while its callers give up on
    theirs, so settling and abandoning agree under ``_guard``: exactly one of
    them hands a result to a hook.
    """

    __slots__ = (
        "_conn",
        "_give_back",
        "_hook",
        "_parse",
        "_withdraw",
        "done",
        "error",
        "request_id",
        "result",
    )

    _guard: Any = NO_GUARD

    def __init__(
        self, conn: Connection, request_id: int, parse: Callable[[Any], T], hook: Hook | None
    ) -> None:
        self._conn = conn
        self.request_id = request_id
        self._parse = parse
        self._hook = hook
        #: The call's ``withdraw`` (set by ``Connection.begin``), for ``_give_up``.
        self._withdraw: Callable[[int], Call[Any]] | None = None
        #: The call's ``give_back`` (set by ``Connection.begin``), for ``_give_up``.
        self._give_back: Hook | None = None
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def _wake(self) -> None:
        """Wake whoever waits for this call (the transport's primitive)."""
        raise NotImplementedError

    def _settle(self, result: Any, error: BaseException | None) -> None:
        """The reader (or a failing connection): the answer is in.

        A hook sees a successful answer even after its caller gave up (the
        blocking client's timeout has marked the call done already).
        """
        with self._guard:
            if not self.done:
                self.result = result
                self.error = error
                self.done = True
            hook = self._hook
        if hook is not None and error is None:
            hook(result)
        self._wake()

    def outcome(self) -> T:
        """The parsed result, or raise the call's error (only once ``done``)."""
        if not self.done:
            raise RuntimeError("the call has not been answered yet")
        if self.error is not None:
            raise self.error
        return self._parse(self.result)

    def abandon(self, on_result: Hook | None = None) -> None:
        """Stop caring about the answer; ``on_result`` still gets a successful one."""
        with self._guard:
            done = self.done
            if not done:
                self._hook = on_result
        if not done:
            if on_result is None or self._conn.closed is not None:
                self._conn.pending.pop(self.request_id, None)
        elif on_result is not None and self.error is None:
            on_result(self.result)

    def _give_up(self) -> None:
        """The caller stopped waiting (cancelled, timed out, interrupted): forget
        the call, unless a hook must still see its answer (a subscribe to
        undo, a fetch's deliveries to give back), and withdraw it from the
        broker if it can be (a ``request``, a long-poll ``fetch``)."""
        give_back = self._give_back
        if give_back is not None:
            self._give_back = None
            self.abandon(give_back)
        elif self._hook is None:
            self._conn.pending.pop(self.request_id, None)
        withdraw = self._withdraw
        if withdraw is not None:
            self._withdraw = None
            self._conn.withdraw(withdraw(self.request_id))


class PostedCall(PendingCall[Any]):
    """A call sent without waiting for its answer (a responder's reply, an ack).

    It stays in the pending table until its answer is read, so the reader
    keeps reading: answers nobody reads would fill the socket and, with the
    broker's output budget, finally stop the broker reading this connection.
    """

    __slots__ = ()

    def _wake(self) -> None:
        return None


class AsyncPendingCall(PendingCall[T]):
    """A call an async task collects: ``await call.wait()``, then ``outcome()``."""

    __slots__ = ()

    async def wait(self) -> None:
        """Wait until ``done``; never raises the call's error. Always a checkpoint:
        the transport gets to send what was begun and read answers meanwhile."""
        raise NotImplementedError

    async def _answered(self) -> None:
        """Wait for the answer the cheapest way (cancelling may cancel the primitive)."""
        raise NotImplementedError

    async def answer(self) -> T:
        """Wait for the answer and return the outcome. A caller cancelled meanwhile
        gives the call up: its late answer is dropped (or only seen by a hook)."""
        try:
            await self._answered()
        finally:
            if not self.done:
                self._give_up()
        return self.outcome()


class SyncPendingCall(PendingCall[T]):
    """A call a thread collects: ``call.wait()`` blocks (up to the call's timeout)."""

    __slots__ = ()

    def wait(self) -> None:
        """Block until ``done`` (or the call timed out: ``outcome`` then raises it)."""
        raise NotImplementedError


class Connection:
    """Request ids, calls in flight, subscriptions and failure of one connection."""

    def __init__(self, post: Callable[[Call[Any]], None] | None = None) -> None:
        #: How the transport sends a call without waiting for it (``withdraw``).
        self._post = post
        self.protocol = ClientProtocol()
        #: Request id -> the call waiting for its answer.
        self.pending: dict[int, PendingCall[Any]] = {}
        #: Subscription id -> the subscription its pushes go to.
        self.subscriptions: dict[int, SubscriptionCore[Any]] = {}
        #: Why the connection ended; None while it is up.
        self.closed: BaseException | None = None

    def begin(
        self, call: Call[T], kind: type[P], hook: Hook | None = None
    ) -> tuple[P, bytes]:
        """Register ``call`` as a ``kind`` of PendingCall; return it with the bytes to send.

        Raises ``ConnectionClosed`` once the connection ended and ``TooLarge``
        (registering nothing) for a frame above the broker's limit.
        """
        if self.closed is not None:
            raise connection_lost(str(self.closed))
        request_id, data = self.protocol.encode(call)
        pending = kind(self, request_id, call.parse, hook)
        if call.withdraw is not None:
            pending._withdraw = call.withdraw
            pending._give_back = call.give_back
        self.pending[request_id] = pending
        return pending, data

    def withdraw(self, call: Call[Any]) -> None:
        """Post ``call``, which withdraws a parked call its caller gave up on
        (``Call.withdraw``), if the broker understands its op (one of protocol
        version 1, or one it announced among its hello ``extensions``: an
        older one would refuse it) and the connection is up.

        Without it the broker would keep the call until its own deadline
        (a ``request``: counted as pending, held by a responder that may
        still be working on it; a ``fetch``: the next message delivered to
        nobody). Its answer, and the withdrawn call's, are read and dropped
        (or given back: ``Call.give_back``).
        """
        if (
            self._post is not None
            and self.closed is None
            and (call.op in BASE_WITHDRAWALS or call.op in self.protocol.extensions)
        ):
            self._post(call)

    def post(self, call: Call[Any]) -> bytes | None:
        """The bytes of ``call`` when nobody waits for its answer; None once closed."""
        if self.closed is not None:
            return None
        return self.protocol.encode(call)[1]

    def receive_data(self, data: bytes | bytearray) -> None:
        """Dispatch every frame in ``data``: answers to their calls, pushes to their
        subscriptions. Never waits: a full subscription buffer applies its
        overflow policy or pauses that subscription in the broker
        (``SubscriptionCore._take``), so the transport keeps reading and the
        answers to this connection's own calls always get through (issue 14).
        Raises ``BrokerError`` for undecodable data (then ``fail`` the connection).
        """
        pending = self.pending
        subscriptions = self.subscriptions
        for event in self.protocol.receive_data(data):
            if type(event) is Reply:
                call = pending.pop(event.id, None)
                if call is not None:
                    call._settle(event.result, event.error)
            elif type(event) is Push:
                subscription = subscriptions.get(event.sub)
                if subscription is not None:
                    subscription._feed(event)
            elif type(event) is Goodbye:
                self.fail(event.error)

    def fail(self, error: BaseException) -> None:
        """Fail every call in flight and end every subscription with ``error``."""
        if self.closed is None:
            self.closed = error
        call_error = error if isinstance(error, ConnectionClosed) else connection_lost(str(error))
        for call in _drain(self.pending):
            call._settle(None, call_error)
        for subscription in _drain(self.subscriptions):
            subscription._end(error)


def _drain(table: dict[int, V]) -> Iterator[V]:
    """Take out every entry, each with one atomic ``popitem`` (safe beside a
    reader thread, which may pop an entry meanwhile: each is taken once)."""
    while True:
        try:
            yield table.popitem()[1]
        except KeyError:
            return
