"""One facade over the four Python clients, so client-level tests are written once.

``client_kind`` is parametrized over ``trio``, ``asyncio``, ``blocking`` and
``in-process``. A test asks for ``client`` (one connected client in a fresh
namespace) or ``open_client`` (a factory, for several connections, other
namespaces, tokens or URLs) and drives it through ``ClientFacade``, whose
every method is a Trio coroutine whatever the client underneath:

    async def test_ping(client):
        assert await client.call("ping", b"x") == b"x"      # any API method, by name

* the Trio and in-process clients are called directly;
* the asyncio client lives on an event loop in its own thread; each call is
  submitted there and awaited from Trio through a worker thread;
* the blocking client is called from Trio worker threads.

``gather`` runs many calls concurrently in each client's natural way (a
nursery, ``asyncio.gather``, a pool of threads) so pipelining is exercised
for real. ``subscription(method, ...)`` opens any push subscription the same
way and yields a ``SubscriptionFacade`` with ``next()`` / ``batch()``.

``await client.advance(seconds)`` moves the broker's clock (visibility
timeouts, TTLs, request deadlines); the in-process kind needs pytest-trio's
``mock_clock`` fixture for that. The facade classes live in client_facades.py,
the scripted fake broker in fake_broker.py.

Model engineers: add methods to the clients, then test them in
test_clients_common.py (or your own module here) by name; nothing in this
file needs to change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
from client_facades import CLIENT_KINDS, AsyncioLoop, ClientFacade, Opener, make_opener
from fake_broker import FakeBroker

from minibroker.embedded import EmbeddedBroker, open_broker
from minibroker.testing import ThreadedBroker, fresh_namespace


@pytest.fixture(params=CLIENT_KINDS)
def client_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def embedded_broker(client_kind: str) -> AsyncIterator[EmbeddedBroker | None]:
    """The in-process broker, for the in-process client only."""
    if client_kind != "in-process":
        yield None
        return
    async with open_broker() as broker:
        yield broker


@pytest.fixture
def asyncio_loop() -> Any:
    loop = AsyncioLoop()
    yield loop
    loop.close()


@pytest.fixture
def open_client(
    client_kind: str,
    embedded_broker: EmbeddedBroker | None,
    minibroker_server: ThreadedBroker,
    asyncio_loop: AsyncioLoop,
) -> Opener:
    """Open clients of this test's kind to the shared broker (in-process: its own)."""
    return make_opener(
        client_kind, minibroker_server.url, embedded_broker, asyncio_loop, minibroker_server
    )


@pytest.fixture
async def client(open_client: Opener) -> AsyncIterator[ClientFacade]:
    """One connected client of this test's kind, in a fresh namespace."""
    async with open_client(namespace=fresh_namespace("client")) as facade:
        yield facade


@pytest.fixture
def fake_broker() -> Any:
    """A scripted broker over TCP (see fake_broker.py)."""
    broker = FakeBroker()
    yield broker
    broker.stop()


@pytest.fixture
def wait_in_thread() -> Callable[..., Awaitable[Any]]:
    """Run a blocking helper (e.g. ``fake_broker.wait_for``) without blocking Trio."""

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args)

    return run
