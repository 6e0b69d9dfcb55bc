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
from contextlib import asynccontextmanager, suppress
from typing import Any, Generic, TypeVar

import trio

from minibroker.client.advice import explaining_connect, explaining_hello, require_event_loop
from minibroker.client.api import AsyncMethods
from minibroker.client.protocol import (
    CLOSED_BY_BROKER,
    Call,
    ClientProtocol,
    Goodbye,
    Push,
    Reply,
    connection_lost,
    hello_call,
)
from minibroker.client.pushes import PushParser, SubscriptionCore, SubscriptionEnded
from minibroker.client.url import BrokerAddress, parse_url
from minibroker.direct_io import direct_socket
from minibroker.errors import BrokerError, ConnectionClosed

T = TypeVar("T")

#: Frames up to this size are sent directly by the calling task (see Client._send).
DIRECT_SEND_MAX_BYTES = 65536
#: Seconds a send may block on a peer that does not read before the
#: connection is declared dead.
SEND_STALL_TIMEOUT = 30.0

#: Items a subscription may hold unread: past that a topic subscription applies
#: its overflow policy in the client, and a log tail or responder is paused in the broker.
DEFAULT_MAX_PENDING = 10_000


class _Waiter:
    __slots__ = ("error", "event", "result")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class PendingCall(Generic[T]):
    """A request sent by ``Client._begin``; collect its answer later (see api.PendingCall)."""

    __slots__ = ("_client", "_id", "_parse", "_waiter")

    def __init__(
        self, client: Client, request_id: int, waiter: _Waiter, parse: Callable[[Any], T]
    ) -> None:
        self._client = client
        self._id = request_id
        self._waiter = waiter
        self._parse = parse

    @property
    def request_id(self) -> int:
        return self._id

    @property
    def done(self) -> bool:
        return self._waiter.event.is_set()

    async def wait(self) -> None:
        await self._waiter.event.wait()  # a checkpoint even when already set

    def outcome(self) -> T:
        waiter = self._waiter
        if not waiter.event.is_set():
            raise RuntimeError("the call has not been answered yet")
        self._client._pending.pop(self._id, None)
        if waiter.error is not None:
            raise waiter.error
        return self._parse(waiter.result)

    def abandon(self, on_result: Callable[[Any], None] | None = None) -> None:
        client = self._client
        client._pending.pop(self._id, None)
        waiter = self._waiter
        if waiter.event.is_set():
            if on_result is not None and waiter.error is None:
                on_result(waiter.result)
        elif on_result is not None and client._closed is None:
            client._on_reply[self._id] = on_result


class Subscription(SubscriptionCore[T]):
    """A live push subscription: iterate it with ``async for``.

    Items arrive in batches from the reader task and wait in a local deque.
    ``dropped`` counts messages discarded for this subscription because it
    fell behind (its overflow policy): by the broker, which says so in a
    ``notice`` frame, or by this client once ``max_pending`` are buffered
    (``SubscriptionCore._take``). The reader never waits for a subscription:
    a full log tail or responder is paused in the broker instead.
    """

    def __init__(
        self, client: Client, call: Call[Any], parser: PushParser[T], max_pending: int
    ) -> None:
        super().__init__(client, call, parser, max_pending)
        self._client: Client = client
        self._arrived = trio.Event()

    async def _start(self) -> None:
        try:
            await self._client._call(self._call, on_reply=self._register)
        except BaseException:
            self._abandon()
            raise

    def _feed(self, push: Push) -> None:
        if self._control(push):
            return
        if self._take(self._parser(push.frame, self._client)):
            self._end_slow()
        self._arrived.set()

    def _end(self, error: BaseException) -> None:
        if self._ended is None:
            self._ended = error
        self._arrived.set()

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self._ended is not None:
                if isinstance(self._ended, SubscriptionEnded | StopAsyncIteration):
                    raise StopAsyncIteration
                raise self._ended
            self._arrived = trio.Event()
            await self._arrived.wait()
        item = self._items.popleft()
        if self._paused and self._consumed():
            self._resume()
        return item

    async def get_batch(self, max_items: int = 1000) -> list[T]:
        """Wait for at least one item, then return up to ``max_items`` at once."""
        first = await self.__anext__()
        batch = [first]
        items = self._items
        while items and len(batch) < max_items:
            batch.append(items.popleft())
        if self._paused and self._consumed():
            self._resume()
        return batch

    def get_nowait(self) -> T | None:
        """The next buffered item, or None when nothing has arrived."""
        if not self._items:
            return None
        item = self._items.popleft()
        if self._paused and self._consumed():
            self._resume()
        return item

    async def aclose(self) -> None:
        if self.sub_id is None or self._ended is not None:
            return
        self._end(StopAsyncIteration())
        self._client._subscriptions.pop(self.sub_id, None)
        if not self._client.closed:
            with suppress(ConnectionClosed, BrokerError):
                await self._client._call(Call("unsubscribe", {"sub": self.sub_id}))


class Client(AsyncMethods):
    """A connection to a broker. Use ``minibroker.connect`` or ``broker.connect``."""

    def __init__(self, stream: trio.abc.Stream, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._stream = stream
        self._protocol = ClientProtocol()
        self._pending: dict[int, _Waiter] = {}
        #: Request id -> hook the reader runs on a successful reply (subscribe calls).
        self._on_reply: dict[int, Callable[[Any], None]] = {}
        self._subscriptions: dict[int, Subscription[Any]] = {}
        self._outbox: list[bytes | memoryview] = []
        self._outbox_ready = trio.Event()
        self._sending = False
        #: Non-blocking writes and reads on a TCP socket (None for TLS and memory streams).
        self._direct = direct_socket(stream)
        self._max_pending = max_pending
        self._closed: BaseException | None = None
        self.server_info: dict[str, Any] = {}

    @property
    def closed(self) -> bool:
        return self._closed is not None

    # -------------------------------------------------------- the transport

    async def _call(
        self, call: Call[T], *, on_reply: Callable[[Any], None] | None = None
    ) -> T:
        if self._closed is not None:
            raise connection_lost(str(self._closed))
        request_id, data = self._protocol.encode(call)
        waiter = _Waiter()
        self._pending[request_id] = waiter
        if on_reply is not None:
            self._on_reply[request_id] = on_reply
        try:
            await self._send(data)
            await waiter.event.wait()
        finally:
            self._pending.pop(request_id, None)
        if waiter.error is not None:
            raise waiter.error
        return call.parse(waiter.result)

    def _begin(self, call: Call[T]) -> PendingCall[T]:
        """Queue ``call`` for the writer without waiting; collect the answer later."""
        if self._closed is not None:
            raise connection_lost(str(self._closed))
        request_id, data = self._protocol.encode(call)
        waiter = _Waiter()
        self._pending[request_id] = waiter
        self._outbox.append(data)
        self._outbox_ready.set()
        return PendingCall(self, request_id, waiter, call.parse)

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
            self._outbox.append(data)
            self._outbox_ready.set()
            return
        direct = self._direct
        if direct is not None:
            try:
                sent = direct.try_write(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._fail(connection_lost(str(exc) or type(exc).__name__))
                return
            if sent < len(data):
                self._outbox.append(memoryview(data)[sent:])
                self._outbox_ready.set()
            return
        self._sending = True
        try:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(SEND_STALL_TIMEOUT) as stalled:
                    await self._stream.send_all(data)
                if stalled.cancelled_caught:
                    self._fail(connection_lost("the broker stopped reading"))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(connection_lost(str(exc) or type(exc).__name__))
        finally:
            self._sending = False
            if self._outbox:
                self._outbox_ready.set()

    async def _post_now(self, call: Call[Any]) -> None:
        """Send ``call`` without waiting for its answer, directly when the
        connection is idle (a responder's reply: saves the writer-task hop)."""
        if self._closed is None:
            await self._send(self._protocol.encode(call)[1])

    def _post(self, call: Call[Any]) -> None:
        """Send ``call`` without waiting; its answer is ignored (cleanup on cancellation)."""
        if self._closed is None:
            self._outbox.append(self._protocol.encode(call)[1])
            self._outbox_ready.set()

    def _subscription(self, call: Call[Any], parser: PushParser[T]) -> _SubscriptionContext[T]:
        return _SubscriptionContext(Subscription(self, call, parser, self._max_pending))

    async def _reader(self) -> None:
        protocol = self._protocol
        direct = self._direct
        receive_some = self._stream.receive_some if direct is None else direct.receive_some
        try:
            while True:
                data = await receive_some(65536)
                if not data:
                    self._fail(connection_lost(CLOSED_BY_BROKER))
                    return
                for event in protocol.receive_data(data):
                    if type(event) is Reply:
                        hook = self._on_reply.pop(event.id, None)
                        if hook is not None and event.error is None:
                            hook(event.result)
                        waiter = self._pending.get(event.id)
                        if waiter is not None:
                            waiter.result = event.result
                            waiter.error = event.error
                            waiter.event.set()
                    elif type(event) is Push:
                        subscription = self._subscriptions.get(event.sub)
                        if subscription is not None:
                            subscription._feed(event)
                    elif type(event) is Goodbye:
                        self._fail(event.error)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(connection_lost(str(exc) or type(exc).__name__))
        except BrokerError as exc:  # undecodable data from the server
            self._fail(exc)

    async def _writer(self) -> None:
        try:
            while True:
                await self._outbox_ready.wait()
                self._outbox_ready = trio.Event()
                if not self._outbox or self._sending:
                    continue  # a direct send is in progress; it wakes us when done
                data = b"".join(self._outbox)
                self._outbox.clear()
                self._sending = True
                try:
                    with trio.move_on_after(SEND_STALL_TIMEOUT) as stalled:
                        await self._stream.send_all(data)
                    if stalled.cancelled_caught:
                        self._fail(connection_lost("the broker stopped reading"))
                        return
                finally:
                    self._sending = False
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(connection_lost(str(exc) or type(exc).__name__))

    def _fail(self, error: BaseException) -> None:
        """Fail every pending call and end every subscription with ``error``."""
        if self._closed is None:
            self._closed = error
        for waiter in self._pending.values():
            if waiter.event.is_set():
                continue  # already answered; its caller has not woken up yet
            waiter.error = (
                error if isinstance(error, ConnectionClosed) else connection_lost(str(error))
            )
            waiter.event.set()
        for subscription in list(self._subscriptions.values()):
            subscription._end(error)
        self._subscriptions.clear()


class _SubscriptionContext(Generic[T]):
    def __init__(self, subscription: Subscription[T]) -> None:
        self._subscription = subscription

    async def __aenter__(self) -> Subscription[T]:
        await self._subscription._start()
        return self._subscription

    async def __aexit__(self, *exc: object) -> None:
        await self._subscription.aclose()


@asynccontextmanager
async def open_client(
    stream: trio.abc.Stream,
    *,
    client_name: str = "minibroker-trio",
    token: str | None = None,
    namespace: str | None = None,
    address: BrokerAddress | None = None,
) -> AsyncIterator[Client]:
    """Run a client over an already-connected stream (TCP, TLS or in-memory).

    ``address`` (the URL's, for TCP) lets a failed hello say what to do.
    """
    require_event_loop("trio")
    client = Client(stream)
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
                for subscription in list(client._subscriptions.values()):
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
    url: str = "minibroker://127.0.0.1:7878",
    *,
    token: str | None = None,
    namespace: str | None = None,
    client_name: str = "minibroker-trio",
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Client]:
    """Connect to a broker over TCP (or TLS with ``minibrokers://``) and say hello."""
    require_event_loop("trio")
    address = parse_url(url)
    with explaining_connect(address):
        stream: trio.abc.Stream = await trio.open_tcp_stream(address.host, address.port)
    if address.tls or ssl_context is not None:
        tls_stream = trio.SSLStream(
            stream, ssl_context or ssl.create_default_context(), server_hostname=address.host
        )
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
        client_name=client_name,
        token=token if token is not None else address.token,
        namespace=namespace if namespace is not None else address.namespace,
        address=address,
    ) as client:
        yield client
