"""The Trio client: ``async with minibroker.connect(url) as mb``.

One task at a time reads the socket and turns received bytes into events
(replies matched to their waiting call by request id, pushes handed to their
subscription). On TCP, a call that finds nobody reading and no subscription
open reads its own answer in its own task: the reply wakes the caller
directly, with no hand-over from a reader task (a scheduler round, the
largest part of the client's share of a request/reply; docs/internals.md,
"Latency"). Otherwise the reader task reads: it reads while any call,
posted call or subscription waits and parks when nothing does, so a caller
never has to cancel its wait to take the socket over. One writer task sends
everything that callers queued since its last wake-up in one ``send_all``.
Many tasks can call at once on one client: their requests are pipelined on
the wire and answered in any order. If the connection drops, every pending
call fails at once with ``ConnectionClosed``; nothing hangs.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any, TypeVar, Unpack

import trio

from minibroker.client.advice import DEFAULT_URL, ConnectOptions, Dial, require_event_loop
from minibroker.client.api import AsyncMethods
from minibroker.client.connection import AsyncPendingCall, Connection, Hook, PostedCall
from minibroker.client.protocol import CLOSED_BY_BROKER, Call, connection_lost
from minibroker.client.pushes import DEFAULT_MAX_PENDING as DEFAULT_MAX_PENDING
from minibroker.client.pushes import AsyncSubscription
from minibroker.direct_io import direct_socket
from minibroker.errors import BrokerError, ConnectionClosed

T = TypeVar("T")

#: Frames up to this size are sent directly by the calling task (see Client._send).
DIRECT_SEND_MAX_BYTES = 65536
#: Seconds a send may block on a peer that does not read before the
#: connection is declared dead.
SEND_STALL_TIMEOUT = 30.0
#: Bytes asked of the socket per read.
READ_CHUNK = 65536


class _TrioCall(AsyncPendingCall[T]):
    """A call whose caller waits on a ``trio.Event``."""

    __slots__ = ("_event",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._event = trio.Event()

    def _wake(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        """Wait until ``done`` (a checkpoint even when it is); never raises the call's error."""
        await self._event.wait()

    _answered = wait


class _TrioSignal:
    """A subscription consumer's wake-up: a fresh ``trio.Event`` per wait."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        self._event = trio.Event()
        await self._event.wait()


#: A live push subscription: iterate it with ``async for`` (see ``AsyncSubscription``).
Subscription = AsyncSubscription


class Client(AsyncMethods):
    """A connection to a broker. Use ``minibroker.connect`` or ``broker.connect``."""

    _pending_kind = _TrioCall

    def __init__(self, stream: trio.abc.Stream, *, max_pending: int | None = None) -> None:
        self._stream = stream
        self._conn = Connection(post=self._post)
        self._outbox: list[bytes | memoryview] = []
        self._outbox_ready = trio.Event()
        self._sending = False
        #: Non-blocking writes and reads on a TCP socket (None for TLS and memory streams).
        self._direct = direct_socket(stream)
        self._max_pending = max_pending
        self.server_info: dict[str, Any] = {}
        #: True while a task reads the socket: the reader task, or a caller
        #: reading its own answer (``_read_own_answer``). Only TCP callers
        #: read directly; on other streams the reader task always reads.
        self._reading = self._direct is None
        #: Set to hand the parked reader task the reading role.
        self._turn = trio.Event()
        if self._reading:
            self._turn.set()

    # -------------------------------------------------------- the transport

    async def _call(self, call: Call[T], *, on_reply: Hook | None = None) -> T:
        conn = self._conn
        pending, data = conn.begin(call, _TrioCall, on_reply)
        await self._send(data)  # never a cancellation point: queued, or a shielded send
        if self._reading or conn.subscriptions or conn.closed is not None:
            self._want_reader()
            result: T = await pending.answer()
            return result
        return await self._read_own_answer(pending)

    def _begin(self, call: Call[T], on_reply: Hook | None = None) -> AsyncPendingCall[T]:
        pending = super()._begin(call, on_reply)
        self._want_reader()
        return pending

    def _post(self, call: Call[Any]) -> None:
        """Queue ``call`` without waiting; its answer is read and dropped (``PostedCall``)."""
        data = self._posted(call)
        if data is not None:
            self._queue(data)

    def _posted(self, call: Call[Any]) -> bytes | None:
        """The bytes of a posted ``call`` (None once closed). Its answer must be
        read, so it waits in the pending table; a quiet call gets none."""
        conn = self._conn
        if conn.closed is not None:
            return None
        if call.quiet:
            return conn.post(call)
        data = conn.begin(call, PostedCall)[1]
        self._want_reader()
        return data

    def _queue(self, data: bytes | memoryview) -> None:
        self._outbox.append(data)
        self._outbox_ready.set()

    async def _send(self, data: bytes) -> None:
        """Send at once when nobody else is sending, else queue for the writer task.

        Handing every frame to the writer task costs a task switch, which is
        most of a sequential call's latency; under concurrency the writer
        still coalesces everything queued meanwhile into one ``send_all``.
        On TCP the frame is written with one non-blocking write (no
        checkpoint, no cancel scope: ``minibroker/direct_io.py``) and only a
        tail the socket did not take goes to the writer. On other streams
        the direct send is shielded, because a send cancelled midway would
        leave half a frame on the wire; a peer that stops reading for
        ``SEND_STALL_TIMEOUT`` seconds is treated as a dead connection.
        """
        if self._sending or self._outbox or len(data) > DIRECT_SEND_MAX_BYTES:
            self._queue(data)
            return
        direct = self._direct
        if direct is not None:
            try:
                sent = direct.try_write(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._conn.fail(connection_lost(str(exc) or type(exc).__name__))
                return
            if sent < len(data):
                self._queue(memoryview(data)[sent:])
            return
        self._sending = True
        try:
            with trio.CancelScope(shield=True):
                await self._send_all(data)
        finally:
            self._sending = False
            if self._outbox:
                self._outbox_ready.set()

    async def _send_all(self, data: bytes) -> None:
        """``send_all``, failing the connection if it breaks or the peer stops reading."""
        try:
            with trio.move_on_after(SEND_STALL_TIMEOUT) as stalled:
                await self._stream.send_all(data)
            if stalled.cancelled_caught:
                self._conn.fail(connection_lost("the broker stopped reading"))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._conn.fail(connection_lost(str(exc) or type(exc).__name__))

    async def _post_now(self, call: Call[Any]) -> None:
        """Send ``call`` without waiting for its answer, directly when the
        connection is idle (a responder's reply: saves the writer-task hop)."""
        data = self._posted(call)
        if data is not None:
            await self._send(data)

    def _signal(self) -> _TrioSignal:
        return _TrioSignal()

    # ----------------------------------------------------------- the readers
    #
    # One task at a time reads the socket: it holds the reading role
    # (``_reading``). Handing the role over never needs a cancellation: the
    # reader task only waits on the socket while something waits for input,
    # and parks on ``_turn`` otherwise; a caller reading directly gives the
    # role back (to the reader task, if anything else still waits) as soon
    # as it has its answer. Trio runs one task at a time, so checking what
    # waits and parking happen with no other task in between.

    def _want_reader(self) -> None:
        """Something now waits for input: wake the reader task unless a task reads."""
        if not self._reading:
            self._reading = True
            self._turn.set()

    async def _read_own_answer(self, pending: _TrioCall[T]) -> T:
        """Nobody reads: read and dispatch on this task until ``pending`` is
        answered (or the connection ends, or the caller is cancelled), then
        give the reading role back."""
        conn = self._conn
        direct = self._direct
        assert direct is not None
        self._reading = True
        try:
            while not pending.done:
                # The request has just left: its answer cannot be there yet,
                # so wait for readiness first instead of trying a read.
                if not self._read_into(conn, await self._receive(direct)):
                    break
        finally:
            self._reading = False
            if conn.pending or conn.subscriptions:
                self._want_reader()
            if not pending.done:
                pending._give_up()
        return pending.outcome()

    async def _receive(self, direct: Any) -> bytes | BaseException:
        """One chunk from the socket (waiting for readiness first), or why it failed."""
        try:
            data: bytes = await direct.receive_some(READ_CHUNK, drained=True)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            return exc
        return data

    def _read_into(self, conn: Connection, data: bytes | bytearray | BaseException) -> bool:
        """Dispatch ``data``; False (the connection failed) on EOF, an error or bad data."""
        if isinstance(data, BaseException):
            self._conn.fail(connection_lost(str(data) or type(data).__name__))
            return False
        if not data:
            self._conn.fail(connection_lost(CLOSED_BY_BROKER))
            return False
        try:
            conn.receive_data(data)
        except BrokerError as exc:  # undecodable data from the server
            self._conn.fail(exc)
            return False
        return True

    async def _reader(self) -> None:
        conn = self._conn
        direct = self._direct
        while conn.closed is None:
            await self._turn.wait()
            self._turn = trio.Event()
            # Holding the role: read while anything waits for input (always
            # on streams where callers never read directly). After a read
            # shorter than a chunk the socket was empty: wait for readiness
            # first instead of trying a read that fails (one system call less).
            # (Read inline, not through ``_receive``: one coroutine less per chunk.)
            drained = False
            while direct is None or conn.pending or conn.subscriptions:
                try:
                    if direct is None:
                        data: bytes | bytearray | BaseException = await self._stream.receive_some(
                            READ_CHUNK
                        )
                    else:
                        data = await direct.receive_some(READ_CHUNK, drained=drained)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    data = exc
                if not self._read_into(conn, data):
                    return
                drained = not isinstance(data, BaseException) and len(data) < READ_CHUNK
            self._reading = False  # nothing waits: park until handed the role

    async def _writer(self) -> None:
        while self._conn.closed is None:
            await self._outbox_ready.wait()
            self._outbox_ready = trio.Event()
            if not self._outbox or self._sending:
                continue  # a direct send is in progress; it wakes us when done
            data = b"".join(self._outbox)
            self._outbox.clear()
            self._sending = True
            try:
                await self._send_all(data)
            finally:
                self._sending = False


@asynccontextmanager
async def open_client(
    stream: trio.abc.Stream,
    hello: Call[dict[str, Any]],
    *,
    max_pending: int | None = None,
    greeting: AbstractContextManager[Any] | None = None,
) -> AsyncIterator[Client]:
    """Run a client over an already-connected stream (TCP, TLS or in-memory)
    that first says ``hello`` (``protocol.hello_call``).

    ``greeting`` surrounds the hello call: ``Dial.greeting`` for a URL's
    connection, so a failed hello says what to do; ``max_pending`` bounds
    each subscription's unread buffer (None: a topic subscription's
    ``buffer``, see ``minibroker/client/pushes.py``).
    """
    require_event_loop("trio")
    client = Client(stream, max_pending=max_pending)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._reader)
            nursery.start_soon(client._writer)
            with greeting or nullcontext():
                client.server_info = await client._call(hello)
            try:
                yield client
            finally:
                for subscription in list(client._conn.subscriptions.values()):
                    subscription._end(StopAsyncIteration())
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The reader and writer never raise, so a lone exception is the hello's
        # (Unauthorized...) or the caller's own: give it back as itself, not
        # wrapped in the nursery's group, so ``except Unauthorized`` works.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        client._conn.fail(ConnectionClosed("the client was closed"))
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def connect(
    url: str = DEFAULT_URL, **options: Unpack[ConnectOptions]
) -> AsyncIterator[Client]:
    """Connect to a broker over TCP (TLS with ``minibrokers://`` or an
    ``ssl_context``) and say hello; ``options``: see ``ConnectOptions``."""
    require_event_loop("trio")
    dial = Dial.of(url, options, "minibroker-trio")
    address = dial.address
    with dial.connecting():
        stream: trio.abc.Stream = await trio.open_tcp_stream(address.host, address.port)
    if dial.ssl_context is not None:
        tls_stream = trio.SSLStream(stream, dial.ssl_context, server_hostname=address.host)
        try:
            # Handshake now, so a bad certificate raises ssl.SSLError here (as in
            # the asyncio and blocking clients), not a vague ConnectionClosed later.
            await tls_stream.do_handshake()
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(tls_stream)
            if isinstance(exc.__cause__, ssl.SSLError):
                raise exc.__cause__ from None
            raise connection_lost(f"TLS handshake failed: {exc}") from exc
        stream = tls_stream
    async with open_client(
        stream, dial.hello(), max_pending=dial.max_pending, greeting=dial.greeting()
    ) as client:
        yield client
