"""The Trio client: ``async with minibroker.connect(url) as mb``.

One reader task turns received bytes into events (replies matched to their
waiting call by request id, pushes handed to their subscription); one writer
task sends everything that callers queued since its last wake-up in one
``send_all``. Many tasks can call at once on one client: their requests are
pipelined on the wire and answered in any order. If the connection drops,
every pending call fails at once with ``ConnectionClosed``; nothing hangs.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, Unpack

import trio

from minibroker.client.advice import (
    DEFAULT_URL,
    ConnectOptions,
    Dial,
    explaining_hello,
    require_event_loop,
)
from minibroker.client.api import AsyncMethods
from minibroker.client.connection import AsyncPendingCall, Connection
from minibroker.client.protocol import CLOSED_BY_BROKER, Call, connection_lost, hello_call
from minibroker.client.pushes import DEFAULT_MAX_PENDING, AsyncSubscription
from minibroker.client.url import BrokerAddress
from minibroker.direct_io import direct_socket
from minibroker.errors import BrokerError, ConnectionClosed

T = TypeVar("T")

#: Frames up to this size are sent directly by the calling task (see Client._send).
DIRECT_SEND_MAX_BYTES = 65536
#: Seconds a send may block on a peer that does not read before the
#: connection is declared dead.
SEND_STALL_TIMEOUT = 30.0



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

    def __init__(self, stream: trio.abc.Stream, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._stream = stream
        self._conn = Connection()
        self._outbox: list[bytes | memoryview] = []
        self._outbox_ready = trio.Event()
        self._sending = False
        #: Non-blocking writes and reads on a TCP socket (None for TLS and memory streams).
        self._direct = direct_socket(stream)
        self._max_pending = max_pending
        self.server_info: dict[str, Any] = {}

    # -------------------------------------------------------- the transport

    async def _call(
        self, call: Call[T], *, on_reply: Callable[[Any], None] | None = None
    ) -> T:
        pending, data = self._conn.begin(call, _TrioCall, on_reply)
        await self._send(data)  # never a cancellation point: queued, or a shielded send
        result: T = await pending.answer()
        return result

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
                self._fail(connection_lost(str(exc) or type(exc).__name__))
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
                self._fail(connection_lost("the broker stopped reading"))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(connection_lost(str(exc) or type(exc).__name__))

    async def _post_now(self, call: Call[Any]) -> None:
        """Send ``call`` without waiting for its answer, directly when the
        connection is idle (a responder's reply: saves the writer-task hop)."""
        data = self._conn.post(call)
        if data is not None:
            await self._send(data)

    def _signal(self) -> _TrioSignal:
        return _TrioSignal()

    async def _reader(self) -> None:
        conn = self._conn
        direct = self._direct
        receive_some = self._stream.receive_some if direct is None else direct.receive_some
        try:
            while True:
                data = await receive_some(65536)
                if not data:
                    self._fail(connection_lost(CLOSED_BY_BROKER))
                    return
                conn.receive_data(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(connection_lost(str(exc) or type(exc).__name__))
        except BrokerError as exc:  # undecodable data from the server
            self._fail(exc)

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

    def _fail(self, error: BaseException) -> None:
        """Fail every pending call and end every subscription with ``error``."""
        self._conn.fail(error)


@asynccontextmanager
async def open_client(
    stream: trio.abc.Stream,
    *,
    client_name: str = "minibroker-trio",
    token: str | None = None,
    namespace: str | None = None,
    address: BrokerAddress | None = None,
    max_pending: int = DEFAULT_MAX_PENDING,
) -> AsyncIterator[Client]:
    """Run a client over an already-connected stream (TCP, TLS or in-memory).

    ``address`` (the URL's, for TCP) lets a failed hello say what to do;
    ``max_pending`` bounds each subscription's unread buffer.
    """
    require_event_loop("trio")
    client = Client(stream, max_pending=max_pending)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._reader)
            nursery.start_soon(client._writer)
            call = hello_call(client_name, token, namespace)
            if address is None:
                client.server_info = await client._call(call)
            else:
                tls = isinstance(stream, trio.SSLStream)
                with explaining_hello(address, tls):
                    client.server_info = await client._call(call)
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
        client._fail(ConnectionClosed("the client was closed"))
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
        stream,
        client_name=dial.client_name,
        token=dial.token,
        namespace=dial.namespace,
        address=address,
        max_pending=dial.max_pending,
    ) as client:
        yield client
