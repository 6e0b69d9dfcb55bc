"""Errors that say what to do (issue 18): the first-hour mistakes, each
answered with the same exception class as before and one sentence naming
the fix, by every network client."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trustme
from client_facades import NETWORK_KINDS, make_opener, threaded_server

import minibroker
import minibroker.aio
from minibroker.config import ServerConfig
from minibroker.errors import ConnectionClosed, Unauthorized
from minibroker.testing import ThreadedBroker
from minibroker.value_class import replace


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("client_kind", NETWORK_KINDS)
async def test_an_unreachable_broker_is_named_with_how_to_start_one(
    client_kind: str, asyncio_loop: Any
) -> None:
    port = closed_port()
    opener = make_opener(client_kind, f"minibroker://127.0.0.1:{port}", loop=asyncio_loop)
    with pytest.raises(ConnectionRefusedError) as refused:
        async with opener():
            pytest.fail("connected to nothing")
    assert f"cannot reach the broker at 127.0.0.1:{port}" in str(refused.value)
    assert f"minibroker serve --port {port}" in str(refused.value)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Any:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return cert_path, key_path


@pytest.fixture
async def tls_broker(tls_files: Any) -> AsyncIterator[ThreadedBroker]:
    cert_path, key_path = tls_files
    config = replace(ServerConfig(port=0), tls_cert=cert_path, tls_key=key_path)
    async with threaded_server(config) as server:
        yield server


@pytest.mark.parametrize("client_kind", NETWORK_KINDS)
async def test_a_plain_client_against_a_tls_broker_is_told_to_use_tls(
    client_kind: str, tls_broker: ThreadedBroker, asyncio_loop: Any
) -> None:
    plain_url = f"minibroker://127.0.0.1:{tls_broker.port}"
    opener = make_opener(client_kind, plain_url, loop=asyncio_loop)
    with pytest.raises(ConnectionClosed) as closed:
        async with opener():
            pytest.fail("a plain hello reached a TLS broker")
    assert f"connect with minibrokers://127.0.0.1:{tls_broker.port}" in str(closed.value)


@pytest.fixture
async def token_broker() -> AsyncIterator[ThreadedBroker]:
    async with threaded_server(ServerConfig(port=0, tokens={"sk_right": "alice"})) as server:
        yield server


@pytest.mark.parametrize("client_kind", NETWORK_KINDS)
@pytest.mark.parametrize("token", [None, "sk_wrong"])
async def test_a_missing_or_wrong_token_says_how_to_pass_one(
    client_kind: str, token: str | None, token_broker: ThreadedBroker, asyncio_loop: Any
) -> None:
    opener = make_opener(client_kind, token_broker.url, loop=asyncio_loop)
    with pytest.raises(Unauthorized) as refused:
        async with opener(token=token):
            pytest.fail("admitted without the right token")
    assert f"minibroker://TOKEN@127.0.0.1:{token_broker.port}" in str(refused.value)
    assert "sk_wrong" not in str(refused.value)


async def test_the_blocking_client_on_the_trio_thread_fails_at_once(minibroker_url: str) -> None:
    """Blocking here would freeze the loop (an in-process broker's too): say so."""
    with pytest.raises(RuntimeError, match=r"this thread runs Trio's event loop"):
        minibroker.connect_sync(minibroker_url)


async def test_the_asyncio_client_under_trio_names_the_trio_client(minibroker_url: str) -> None:
    with pytest.raises(RuntimeError, match=r"use minibroker\.connect\(url\) \(same methods\)"):
        async with minibroker.aio.connect(minibroker_url):
            pytest.fail("the asyncio client ran under Trio")


def test_the_trio_client_under_asyncio_names_the_asyncio_client(minibroker_url: str) -> None:
    async def main() -> None:
        async with minibroker.connect(minibroker_url):
            pytest.fail("the Trio client ran under asyncio")

    with pytest.raises(RuntimeError, match=r"use minibroker\.aio\.connect\(url\) \(same methods\)"):
        asyncio.run(main())


def test_the_in_process_broker_under_asyncio_names_what_to_use() -> None:
    async def main() -> None:
        async with minibroker.open_broker():
            pytest.fail("the Trio broker ran under asyncio")

    with pytest.raises(RuntimeError, match=r"runs under asyncio"):
        asyncio.run(main())



async def test_a_blocking_call_on_the_trio_thread_fails_at_once(minibroker_url: str) -> None:
    """Made in a worker thread, then called from the Trio task: still refused."""
    mb = await trio.to_thread.run_sync(minibroker.connect_sync, minibroker_url)
    try:
        with pytest.raises(RuntimeError, match=r"the blocking client's 'ping' blocks"):
            mb.ping()
        assert await trio.to_thread.run_sync(mb.ping, b"from a thread") == b"from a thread"
    finally:
        mb.close()


def test_every_connect_refuses_an_unknown_option_before_connecting() -> None:
    # The options are one ConnectOptions for all three connects: a misspelt
    # one must still fail at once, as a keyword-only parameter did.
    url = "minibroker://127.0.0.1:1"  # nothing listens: reaching it would raise OSError
    unknown = "unexpected keyword arguments: tokn"
    with pytest.raises(TypeError, match=unknown):
        minibroker.connect_sync(url, tokn="secret")  # type: ignore[call-arg]

    async def on_trio() -> None:
        async with minibroker.connect(url, tokn="secret"):  # type: ignore[call-arg]
            pass

    with pytest.raises(TypeError, match=unknown):
        trio.run(on_trio)

    async def on_asyncio() -> None:
        minibroker.aio.connect(url, tokn="secret")  # type: ignore[call-arg]

    with pytest.raises(TypeError, match=unknown):
        asyncio.run(on_asyncio())
