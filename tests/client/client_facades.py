"""Facades over the four Python clients, so client-level tests are written once.

See conftest.py for the fixtures that hand these out and how to use them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import trio
import trio.testing

import minibroker
import minibroker.aio
import minibroker.client.sync
from minibroker.client.protocol import Call
from minibroker.client.pushes import PushParser, SubscriptionEnded
from minibroker.config import ServerConfig
from minibroker.embedded import EmbeddedBroker
from minibroker.testing import ThreadedBroker

#: Safety net for anything that waits (never reached when things work).
SAFETY = 30.0

CLIENT_KINDS = ["trio", "asyncio", "blocking", "in-process"]
#: The clients that speak TCP (they can reach the fake broker and use TLS).
NETWORK_KINDS = ["trio", "asyncio", "blocking"]

# A call spec for ``gather``: (method name, positional args, keyword args).
CallSpec = tuple[str, tuple[Any, ...], dict[str, Any]]


def spec(method: str, *args: Any, **kwargs: Any) -> CallSpec:
    return (method, args, kwargs)


Opener = Callable[..., AbstractAsyncContextManager["ClientFacade"]]

# ---------------------------------------------------------------- facades


class SubscriptionFacade:
    """One push subscription, read with Trio coroutines whatever the client."""

    def __init__(self, sub: Any, next_item: Callable[[], Awaitable[Any]], batch: Any) -> None:
        #: The client's own Subscription object (``dropped``, ``ended``, ``info``...).
        self.sub = sub
        self._next = next_item
        self._batch = batch

    @property
    def dropped(self) -> int:
        return int(self.sub.dropped)

    async def next(self) -> Any:
        """The next item; raises StopAsyncIteration once the subscription ended."""
        return await self._next()

    async def batch(self, max_items: int = 1000) -> list[Any]:
        return list(await self._batch(max_items))

    async def take(self, count: int) -> list[Any]:
        return [await self.next() for _ in range(count)]


class ClientFacade:
    """What every test sees. Subclasses adapt one client flavour."""

    kind: str
    client: Any
    _advance: Callable[[float], Awaitable[None]] | None = None

    async def advance(self, seconds: float) -> None:
        """Move the broker's clock forward: due timeouts, TTLs and deadlines fire now.

        TCP kinds jump the threaded server's test clock (``ThreadedBroker.advance``);
        the in-process broker shares the test's Trio clock, so the test must ask
        for pytest-trio's ``mock_clock`` (or ``autojump_clock``) fixture.
        """
        assert self._advance is not None, "this facade was not opened by make_opener"
        await self._advance(seconds)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call API method ``method`` (``ping``, ``put``, ``publish``...)."""
        raise NotImplementedError

    async def raw(self, call: Call[Any]) -> Any:
        """Send a hand-made Call through the client's transport (``_call``)."""
        raise NotImplementedError

    async def gather(self, specs: list[CallSpec]) -> list[Any]:
        """Run calls concurrently; results in order, exceptions returned as values."""
        raise NotImplementedError

    def subscription(
        self, method: str, *args: Any, **kwargs: Any
    ) -> AbstractAsyncContextManager[SubscriptionFacade]:
        """Open the subscription that API method ``method`` returns."""
        raise NotImplementedError

    def raw_subscription(
        self, call: Call[Any], parser: PushParser[Any]
    ) -> AbstractAsyncContextManager[SubscriptionFacade]:
        """Open a subscription through the transport's ``_subscription``."""
        raise NotImplementedError

    @property
    def server_info(self) -> dict[str, Any]:
        return dict(self.client.server_info)

    @property
    def closed(self) -> bool:
        return bool(self.client.closed)


class TrioFacade(ClientFacade):
    """The Trio client over TCP, or the in-process client over a memory stream."""

    def __init__(self, kind: str, client: minibroker.Client) -> None:
        self.kind = kind
        self.client = client

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self.client, method)(*args, **kwargs)

    async def raw(self, call: Call[Any]) -> Any:
        return await self.client._call(call)

    async def gather(self, specs: list[CallSpec]) -> list[Any]:
        results: list[Any] = [None] * len(specs)

        async def one(index: int, method: str, args: Any, kwargs: Any) -> None:
            try:
                results[index] = await getattr(self.client, method)(*args, **kwargs)
            except Exception as exc:
                results[index] = exc

        async with trio.open_nursery() as nursery:
            for index, (method, args, kwargs) in enumerate(specs):
                nursery.start_soon(one, index, method, args, kwargs)
        return results

    def subscription(
        self, method: str, *args: Any, **kwargs: Any
    ) -> AbstractAsyncContextManager[SubscriptionFacade]:
        return self._open(getattr(self.client, method)(*args, **kwargs))

    def raw_subscription(
        self, call: Call[Any], parser: PushParser[Any]
    ) -> AbstractAsyncContextManager[SubscriptionFacade]:
        return self._open(self.client._subscription(call, parser))

    @asynccontextmanager
    async def _open(self, context: Any) -> AsyncIterator[SubscriptionFacade]:
        async with context as sub:
            yield SubscriptionFacade(sub, sub.__anext__, sub.get_batch)


class AsyncioLoop:
    """An asyncio event loop running in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    async def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the loop; await its result from Trio."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await trio.to_thread.run_sync(future.result, SAFETY)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(SAFETY)
        self.loop.close()


class AsyncioFacade(ClientFacade):
    kind = "asyncio"

    def __init__(self, loop: AsyncioLoop, client: minibroker.aio.Client) -> None:
        self._loop = loop
        self.client = client

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        async def run() -> Any:
            return await getattr(self.client, method)(*args, **kwargs)

        return await self._loop.run(run())

    async def raw(self, call: Call[Any]) -> Any:
        return await self._loop.run(self.client._call(call))

    async def gather(self, specs: list[CallSpec]) -> list[Any]:
        async def run() -> list[Any]:
            return await asyncio.gather(
                *(getattr(self.client, m)(*a, **k) for m, a, k in specs), return_exceptions=True
            )

        return list(await self._loop.run(run()))

    def subscription(
        self, method: str, *args: Any, **kwargs: Any
    ) -> AbstractAsyncContextManager[SubscriptionFacade]:
        return self._open(lambda: getattr(self.client, method)(*args, **kwargs))

    def raw_subscription(
        self, call: Call[Any], parser: PushParser[Any]
    ) -> AbstractAsyncContextManager[SubscriptionFacade]:
        return self._open(lambda: self.client._subscription(call, parser))

    @asynccontextmanager
    async def _open(self, make: Callable[[], Any]) -> AsyncIterator[SubscriptionFacade]:
        loop = self._loop

        async def enter() -> tuple[Any, Any]:
            context = make()
            return context, await context.__aenter__()

        context, sub = await loop.run(enter())

        async def next_item() -> Any:
            return await loop.run(sub.__anext__())

        async def batch(max_items: int) -> Any:
            return await loop.run(sub.get_batch(max_items))

        try:
            yield SubscriptionFacade(sub, next_item, batch)
        finally:
            await loop.run(context.__aexit__(None, None, None))


class BlockingFacade(ClientFacade):
    kind = "blocking"

    def __init__(self, client: minibroker.client.sync.Client) -> None:
        self.client = client

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await trio.to_thread.run_sync(lambda: getattr(self.client, method)(*args, **kwargs))

    async def raw(self, call: Call[Any]) -> Any:
        return await trio.to_thread.run_sync(self.client._call, call)

    async def gather(self, specs: list[CallSpec]) -> list[Any]:
        def one(item: CallSpec) -> Any:
            method, args, kwargs = item
            try:
                return getattr(self.client, method)(*args, **kwargs)
            except Exception as exc:
                return exc

        def run_all() -> list[Any]:
            workers = max(1, min(len(specs), 64))
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(one, specs))

        return await trio.to_thread.run_sync(run_all)

    def subscription(
        self, method: str, *args: Any, **kwargs: Any
    ) -> AbstractAsyncContextManager[SubscriptionFacade]:
        return self._open(lambda: getattr(self.client, method)(*args, **kwargs))

    def raw_subscription(
        self, call: Call[Any], parser: PushParser[Any]
    ) -> AbstractAsyncContextManager[SubscriptionFacade]:
        return self._open(lambda: self.client._subscription(call, parser))

    @asynccontextmanager
    async def _open(self, make: Callable[[], Any]) -> AsyncIterator[SubscriptionFacade]:
        def enter() -> tuple[Any, Any]:
            context = make()
            return context, context.__enter__()

        context, sub = await trio.to_thread.run_sync(enter)

        def get() -> Any:
            try:
                return sub.get(SAFETY)
            except SubscriptionEnded:
                raise StopAsyncIteration from None

        async def next_item() -> Any:
            return await trio.to_thread.run_sync(get)

        async def batch(max_items: int) -> Any:
            return await trio.to_thread.run_sync(sub.get_batch, max_items, SAFETY)

        try:
            yield SubscriptionFacade(sub, next_item, batch)
        finally:
            await trio.to_thread.run_sync(context.__exit__, None, None, None)



def make_opener(
    kind: str,
    default_url: str | None,
    broker: EmbeddedBroker | None = None,
    loop: AsyncioLoop | None = None,
    server: ThreadedBroker | None = None,
) -> Opener:
    """A factory of connected facades of one kind.

    ``opener(url=None, namespace=None, token=None, ssl_context=None)`` is an
    async context manager; ``url`` defaults to the test's broker. ``server``
    (TCP kinds) or ``broker`` (in-process) is what ``facade.advance`` moves.
    """

    async def advance(seconds: float) -> None:
        if kind == "in-process":
            assert broker is not None
            clock = trio.lowlevel.current_clock()
            if not isinstance(clock, trio.testing.MockClock):
                raise RuntimeError(
                    "advancing the in-process broker's clock needs a MockClock: "
                    "ask for pytest-trio's mock_clock or autojump_clock fixture"
                )
            clock.jump(seconds)
            broker.server.timers.poke_now()
        else:
            if server is None:
                raise RuntimeError("no threaded server to advance for this client")
            await trio.to_thread.run_sync(server.advance, seconds)

    @asynccontextmanager
    async def opener(
        url: str | None = None,
        *,
        namespace: str | None = None,
        token: str | None = None,
        ssl_context: Any = None,
    ) -> AsyncIterator[ClientFacade]:
        async with _open(url, namespace=namespace, token=token, ssl_context=ssl_context) as facade:
            facade._advance = advance
            yield facade

    @asynccontextmanager
    async def _open(
        url: str | None,
        *,
        namespace: str | None,
        token: str | None,
        ssl_context: Any,
    ) -> AsyncIterator[ClientFacade]:
        target = url or default_url
        if kind == "in-process":
            assert broker is not None and url is None and ssl_context is None
            async with broker.connect(namespace=namespace, token=token) as client:
                yield TrioFacade(kind, client)
        elif kind == "trio":
            assert target is not None
            async with minibroker.connect(
                target, namespace=namespace, token=token, ssl_context=ssl_context
            ) as client:
                yield TrioFacade(kind, client)
        elif kind == "asyncio":
            assert loop is not None and target is not None
            aio_client = await loop.run(
                _aio_connect(target, namespace=namespace, token=token, ssl_context=ssl_context)
            )
            try:
                yield AsyncioFacade(loop, aio_client)
            finally:
                await loop.run(aio_client.aclose())
        elif kind == "blocking":
            assert target is not None
            sync_client = await trio.to_thread.run_sync(
                lambda: minibroker.connect_sync(
                    target, namespace=namespace, token=token, ssl_context=ssl_context
                )
            )
            try:
                yield BlockingFacade(sync_client)
            finally:
                await trio.to_thread.run_sync(sync_client.close)
        else:  # pragma: no cover
            raise AssertionError(kind)

    return opener


async def _aio_connect(url: str, **options: Any) -> minibroker.aio.Client:
    return await minibroker.aio.connect(url, **options)


@asynccontextmanager
async def threaded_server(config: ServerConfig | None = None) -> AsyncIterator[ThreadedBroker]:
    """``run_in_thread`` for Trio tests: the threaded broker is stopped from a
    worker thread (stopping blocks until its thread ends)."""
    server = ThreadedBroker(config or ServerConfig(port=0))
    await trio.to_thread.run_sync(server.start)
    try:
        yield server
    finally:
        await trio.to_thread.run_sync(server.stop)


@asynccontextmanager
async def opener_for(
    kind: str, config: ServerConfig, loop: asyncio.AbstractEventLoop | None = None
) -> AsyncIterator[Any]:
    """An opener of ``kind`` clients to a broker started with ``config``: in
    this process for the in-process client, in a thread for the others."""
    if kind == "in-process":
        async with minibroker.open_broker(config=config) as broker:
            yield make_opener(kind, None, broker)
        return
    async with threaded_server(config) as server:
        yield make_opener(kind, server.url, loop=loop)
