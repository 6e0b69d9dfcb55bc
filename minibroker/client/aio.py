"""The asyncio client: ``async with minibroker.aio.connect(url) as mb``.

The same methods and errors as the Trio client, over asyncio's callbacks
instead of tasks (the state is the shared sans-I/O ``Connection``):

* reading is an ``asyncio.Protocol``: ``data_received`` dispatches every
  frame of the chunk synchronously (replies complete their caller's future,
  pushes land in their subscription's buffer), so a chunk of a thousand
  pipelined answers costs one callback, not a thousand wake-ups;
* writing is coalesced: a call appends its frame to an outbox and, if none
  is pending, schedules one flush with ``call_soon``, so everything queued
  during a loop iteration leaves in one ``transport.write``. Past the
  transport's high-water mark (``pause_writing``) new calls wait for
  ``resume_writing``, like ``StreamWriter.drain()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any, TypeVar, Unpack

from minibroker.client.advice import DEFAULT_URL, ConnectOptions, Dial, require_event_loop
from minibroker.client.api import AsyncMethods
from minibroker.client.connection import AsyncPendingCall, Connection, Hook
from minibroker.client.protocol import CLOSED_BY_BROKER, Call, connection_lost
from minibroker.client.pushes import DEFAULT_MAX_PENDING, AsyncSubscription
from minibroker.errors import BrokerError, ConnectionClosed

T = TypeVar("T")

#: How long ``aclose`` lets buffered output drain before aborting the transport.
CLOSE_TIMEOUT = 5.0

__all__ = ["DEFAULT_MAX_PENDING", "Client", "Subscription", "connect"]


class _AioCall(AsyncPendingCall[T]):
    """A call whose caller waits on an asyncio future."""

    __slots__ = ("_future",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _wake(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self) -> None:
        """Wait until ``done``; never raises the call's error. Always a checkpoint."""
        if self.done:
            await asyncio.sleep(0)  # let the flush and the reader run
        else:
            # asyncio.wait neither raises nor cancels the future when this task
            # is cancelled: the call stays collectable.
            await asyncio.wait((self._future,))

    async def _answered(self) -> None:
        await self._future


class _FutureSignal:
    """A subscription consumer's wake-up: a fresh future per wait."""

    __slots__ = ("_future", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self) -> None:
        self._future = self._loop.create_future()
        await self._future


#: A live push subscription: ``async for item in sub`` (see ``AsyncSubscription``).
Subscription = AsyncSubscription


class _Wire(asyncio.Protocol):
    """asyncio's callbacks, acting on the client (keeps them off its public API)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._client._transport = transport

    def data_received(self, data: bytes) -> None:
        client = self._client
        try:
            client._conn.receive_data(data)
        except BrokerError as exc:  # undecodable data from the server
            client._fail(exc)
            if client._transport is not None:
                client._transport.abort()

    def eof_received(self) -> bool | None:
        self._client._fail(connection_lost(CLOSED_BY_BROKER))
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        reason = str(exc) if exc is not None else CLOSED_BY_BROKER
        self._client._fail(connection_lost(reason or type(exc).__name__))
        if not self._client._lost.done():
            self._client._lost.set_result(None)

    def pause_writing(self) -> None:
        self._client._writable.clear()

    def resume_writing(self) -> None:
        self._client._writable.set()


class Client(AsyncMethods):
    """A connection to a broker from asyncio code. Use ``minibroker.aio.connect``.

    Many tasks may call at once: their requests are pipelined on the wire and
    answered in any order. Every method of the Trio client is here with the
    same name and arguments (they come from the same ``AsyncMethods`` mixins).
    """

    _pending_kind = _AioCall

    def __init__(self, *, max_pending: int | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._conn = Connection(post=self._post)
        self._outbox: list[bytes] = []
        self._flush_scheduled = False
        self._transport: asyncio.Transport | None = None
        #: Set while the transport takes writes: cleared by ``pause_writing``
        #: (past its high-water mark), set again by ``resume_writing`` or the end.
        self._writable = asyncio.Event()
        self._writable.set()
        self._max_pending = max_pending
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self.server_info: dict[str, Any] = {}

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -------------------------------------------------------- the transport

    async def _call(self, call: Call[T], *, on_reply: Hook | None = None) -> T:
        if not self._writable.is_set() and self._conn.closed is None:
            await self._writable.wait()
        return await self._begin(call, on_reply).answer()

    def _queue(self, data: bytes) -> None:
        """Queue ``data`` for this loop iteration's flush."""
        self._outbox.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _signal(self) -> _FutureSignal:
        return _FutureSignal(self._loop)

    def _flush(self) -> None:
        """One write of everything queued during this loop iteration."""
        self._flush_scheduled = False
        outbox = self._outbox
        if not outbox or self._transport is None or self._conn.closed is not None:
            outbox.clear()
            return
        data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
        outbox.clear()
        self._transport.write(data)

    def _fail(self, error: BaseException) -> None:
        """Fail every pending call and end every subscription with ``error``."""
        self._conn.fail(error)
        self._writable.set()  # nothing waits to write into a closed connection

    # ------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close the connection: pending calls fail, subscriptions end. Idempotent."""
        if self._conn.closed is None:
            for subscription in list(self._conn.subscriptions.values()):
                subscription._end(StopAsyncIteration())
            self._fail(ConnectionClosed("the client was closed"))
        transport = self._transport
        if transport is None:
            return
        if not transport.is_closing():
            transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), CLOSE_TIMEOUT)
        except TimeoutError:
            transport.abort()


class _Connect:
    """What ``connect`` returns: use it with ``async with``, or ``await`` it and
    call ``aclose()`` yourself."""

    def __init__(self, dial: Dial) -> None:
        self._dial = dial
        self._client: Client | None = None

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._open()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _open(self) -> Client:
        require_event_loop("asyncio")
        dial = self._dial
        address, ssl_context = dial.address, dial.ssl_context
        client = Client(max_pending=dial.max_pending)
        loop = asyncio.get_running_loop()
        with dial.connecting():
            await loop.create_connection(
                lambda: _Wire(client),
                address.host,
                address.port,
                ssl=ssl_context,
                server_hostname=address.host if ssl_context is not None else None,
            )
        try:
            with dial.greeting():
                client.server_info = await client._call(dial.hello())
        except BaseException:
            await client.aclose()
            raise
        return client


def connect(url: str = DEFAULT_URL, **options: Unpack[ConnectOptions]) -> _Connect:
    """Connect to a broker over TCP (TLS with ``minibrokers://`` or an
    ``ssl_context``) and say hello; ``options``: see ``ConnectOptions``.

        async with minibroker.aio.connect("minibroker://127.0.0.1:7878") as mb:
            await mb.ping()

    Raises ``Unauthorized`` or ``UnsupportedVersion`` if the broker refuses the
    hello, ``OSError`` if it cannot be reached.
    """
    return _Connect(Dial.of(url, options, "minibroker-asyncio"))
