"""The same client-level tests against the Trio, asyncio, blocking and in-process clients.

Every test takes the ``client`` fixture (or ``open_client``) from conftest.py,
which is parametrized over the four clients; call API methods by name:
``await client.call("ping", b"x")``. Tests marked with
``@pytest.mark.parametrize("client_kind", NETWORK_KINDS)`` run only against the
TCP clients (they need the scripted fake broker or TLS).
"""

from __future__ import annotations

import ssl
from dataclasses import replace
from typing import Any

import pytest
import trio
import trustme
from client_facades import (
    NETWORK_KINDS,
    SAFETY,
    ClientFacade,
    make_opener,
    spec,
    threaded_server,
)
from fake_broker import items_parser, script

from minibroker.client.protocol import Call
from minibroker.client.pushes import SubscriptionEnded
from minibroker.config import ServerConfig
from minibroker.core.errors import (
    BadRequest,
    BrokerError,
    ConnectionClosed,
    ShuttingDown,
    Unauthorized,
    UnknownOp,
)
from minibroker.embedded import open_broker
from minibroker.testing import fresh_namespace

# ------------------------------------------------------------- basics


async def test_ping_round_trip(client: ClientFacade) -> None:
    assert await client.call("ping", b"hello") == b"hello"
    assert await client.call("ping") is None
    assert await client.call("ping", b"") == b""


async def test_hello_selects_the_namespace_and_reports_the_server(open_client: Any) -> None:
    async with open_client(namespace="alpha") as a, open_client(namespace="beta") as b:
        assert a.server_info["namespace"] == "alpha"
        assert b.server_info["namespace"] == "beta"
        assert a.server_info["protocol"] == 1
        assert a.server_info["server"] == "minibroker"
        assert a.server_info["connection"] != b.server_info["connection"]
        assert await a.call("ping", b"a") == b"a"
        assert await b.call("ping", b"b") == b"b"


async def test_unknown_op_raises_unknown_op_and_the_connection_stays_usable(
    client: ClientFacade,
) -> None:
    with pytest.raises(UnknownOp) as info:
        await client.raw(Call("nope", {}))
    assert isinstance(info.value, BrokerError)
    assert info.value.code == "unknown_op"
    assert "nope" in str(info.value)
    assert await client.call("ping", b"still here") == b"still here"
    assert not client.closed


async def test_a_mistyped_field_raises_bad_request(client: ClientFacade) -> None:
    with pytest.raises(BadRequest):
        await client.raw(Call("ping", {"data": 5}))
    assert await client.call("ping", b"ok") == b"ok"


async def test_pipelined_calls_are_matched_to_their_answers(client: ClientFacade) -> None:
    payloads = [b"%d:" % i + b"x" * (i % 13) for i in range(300)]
    results = await client.gather([spec("ping", payload) for payload in payloads])
    assert results == payloads


async def test_errors_and_answers_interleave_in_a_pipeline(client: ClientFacade) -> None:
    specs = [
        spec("_call", Call("nope", {})) if i % 3 == 0 else spec("ping", b"%d" % i)
        for i in range(60)
    ]
    results = await client.gather(specs)
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert isinstance(result, UnknownOp)
        else:
            assert result == b"%d" % i


async def test_clients_in_different_namespaces_do_not_share_a_connection(
    open_client: Any,
) -> None:
    first, second = fresh_namespace("iso"), fresh_namespace("iso")
    async with open_client(namespace=first) as a, open_client(namespace=second) as b:
        assert (a.server_info["namespace"], b.server_info["namespace"]) == (first, second)
        # Model tests extend this: a queue, topic or log made in one namespace
        # must be invisible in the other.


async def test_advance_moves_the_broker_clock(client: ClientFacade, mock_clock: Any) -> None:
    # Nothing is scheduled yet: advancing must simply work for every kind
    # (model tests use it to fire visibility timeouts, TTLs and deadlines).
    await client.advance(5.0)
    assert await client.call("ping", b"later") == b"later"


# ------------------------------------------------------ auth and shutdown


@pytest.fixture
async def auth_opener(
    client_kind: str, asyncio_loop: Any
) -> Any:
    """Clients of this kind to a broker that requires the token ``secret``."""
    config = ServerConfig(port=0, tokens={"secret": "alice"})
    if client_kind == "in-process":
        async with open_broker(config=config) as broker:
            yield make_opener(client_kind, None, broker)
        return
    async with threaded_server(config) as server:
        yield make_opener(client_kind, server.url, loop=asyncio_loop)


async def test_a_valid_token_is_accepted(auth_opener: Any) -> None:
    async with auth_opener(token="secret", namespace="auth") as mb:
        assert await mb.call("ping", b"in") == b"in"


@pytest.mark.parametrize("token", ["wrong", None])
async def test_a_wrong_or_missing_token_raises_unauthorized(
    auth_opener: Any, token: str | None
) -> None:
    with pytest.raises(Unauthorized):
        async with auth_opener(token=token):
            pytest.fail("connected without a valid token")


async def test_server_shutdown_fails_calls_with_connection_closed(
    client_kind: str, asyncio_loop: Any
) -> None:
    """Stopping the broker under busy clients: every caller gets ConnectionClosed."""
    outcomes: list[BaseException] = []

    async def hammer(mb: ClientFacade, started: trio.Event) -> None:
        try:
            while True:
                await mb.call("ping", b"busy")
                started.set()
        except BrokerError as exc:
            outcomes.append(exc)

    async def run(opener: Any, stop: Any) -> None:
        with trio.fail_after(SAFETY):
            async with opener(namespace="bye") as mb:
                async with trio.open_nursery() as nursery:
                    ready = []
                    for _ in range(4):
                        started = trio.Event()
                        ready.append(started)
                        nursery.start_soon(hammer, mb, started)
                    for started in ready:
                        await started.wait()
                    await stop()
                assert mb.closed
                with pytest.raises(ConnectionClosed):
                    await mb.call("ping")

    if client_kind == "in-process":
        async with open_broker() as broker:

            async def stop_embedded() -> None:
                broker.server.shutdown()
                await broker.server.stopped.wait()

            await run(make_opener(client_kind, None, broker), stop_embedded)
    else:
        async with threaded_server() as server:
            opener = make_opener(client_kind, server.url, loop=asyncio_loop)
            await run(opener, lambda: trio.to_thread.run_sync(server.stop))
    assert len(outcomes) == 4
    assert all(isinstance(exc, ConnectionClosed) for exc in outcomes), outcomes


# ---------------------------------------- pushes and failures (fake broker)


@pytest.mark.parametrize("client_kind", NETWORK_KINDS)
async def test_pushes_that_arrive_with_the_subscribe_reply_are_not_lost(
    open_client: Any, fake_broker: Any
) -> None:
    first = {"op": "msg", "sub": 7, "items": [1, 2, 3]}
    call = Call("script", script({"sub": 7}, [first]))
    async with open_client(fake_broker.url) as mb:
        async with mb.raw_subscription(call, items_parser) as sub:
            with trio.fail_after(SAFETY):
                assert await sub.take(3) == [1, 2, 3]
            assert sub.sub.sub_id == 7
            assert sub.sub.info == {"sub": 7}
        unsubscribes = await trio.to_thread.run_sync(fake_broker.wait_for, "unsubscribe")
        assert unsubscribes[0]["sub"] == 7


@pytest.mark.parametrize("client_kind", NETWORK_KINDS)
async def test_pushes_go_to_their_own_subscription_and_notice_counts_drops(
    open_client: Any, fake_broker: Any
) -> None:
    async with open_client(fake_broker.url) as mb:
        one_call = Call("script", script({"sub": 1}))
        two_call = Call("script", script({"sub": 2}))
        async with (
            mb.raw_subscription(one_call, items_parser) as one,
            mb.raw_subscription(two_call, items_parser) as two,
        ):
            pushes = [
                {"op": "msg", "sub": 2, "items": ["b1"]},
                {"op": "msg", "sub": 1, "items": ["a1", "a2"]},
                {"op": "notice", "sub": 1, "dropped": 5},
                {"op": "msg", "sub": 9, "items": ["nobody's"]},
                {"op": "msg", "sub": 2, "items": ["b2"]},
            ]
            await mb.raw(Call("script", script(None, pushes)))
            with trio.fail_after(SAFETY):
                assert await one.take(2) == ["a1", "a2"]
                assert await two.take(2) == ["b1", "b2"]
            assert one.dropped == 5
            assert two.dropped == 0


@pytest.mark.parametrize("client_kind", NETWORK_KINDS)
async def test_end_push_stops_iteration_with_subscription_ended(
    open_client: Any, fake_broker: Any
) -> None:
    pushes = [
        {"op": "msg", "sub": 3, "items": ["last"]},
        {"op": "end", "sub": 3, "code": "not_found", "message": "log deleted"},
    ]
    call = Call("script", script({"sub": 3}, pushes))
    async with open_client(fake_broker.url) as mb:
        async with mb.raw_subscription(call, items_parser) as s:
            with trio.fail_after(SAFETY):
                assert await s.next() == "last"
                with pytest.raises(StopAsyncIteration):
                    await s.next()
            assert isinstance(s.sub.ended, SubscriptionEnded)
            assert s.sub.ended.cause.code == "not_found"
        assert await mb.call("ping", b"fine") == b"fine"


@pytest.mark.parametrize("client_kind", NETWORK_KINDS)
async def test_a_dropped_connection_fails_every_pending_call_at_once(
    open_client: Any, fake_broker: Any
) -> None:
    async with open_client(fake_broker.url) as mb:
        results: list[Any] = []

        async def pending_calls() -> None:
            results.extend(await mb.gather([spec("_call", Call("hold", {})) for _ in range(20)]))

        async with mb.raw_subscription(Call("script", script({"sub": 4})), items_parser) as sub:
            with trio.fail_after(SAFETY):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pending_calls)
                    await trio.to_thread.run_sync(fake_broker.wait_for, "hold", 20)
                    fake_broker.drop()
                with pytest.raises(ConnectionClosed):
                    await sub.next()
        assert len(results) == 20
        assert all(isinstance(result, ConnectionClosed) for result in results), results
        assert mb.closed
        with pytest.raises(ConnectionClosed):
            await mb.call("ping")


@pytest.mark.parametrize("client_kind", NETWORK_KINDS)
async def test_goodbye_fails_pending_calls_and_ends_subscriptions_with_the_reason(
    open_client: Any, fake_broker: Any
) -> None:
    async with open_client(fake_broker.url) as mb:
        results: list[Any] = []

        async def pending_calls() -> None:
            results.extend(await mb.gather([spec("_call", Call("hold", {})) for _ in range(5)]))

        async with mb.raw_subscription(Call("script", script({"sub": 5})), items_parser) as sub:
            with trio.fail_after(SAFETY):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pending_calls)
                    await trio.to_thread.run_sync(fake_broker.wait_for, "hold", 5)
                    fake_broker.send(
                        {"op": "bye", "code": "shutting_down", "message": "going away"}
                    )
                with pytest.raises(ShuttingDown):
                    await sub.next()
        assert all(isinstance(result, ConnectionClosed) for result in results), results
        assert all("going away" in str(result) for result in results)
        assert mb.closed


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> Any:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(cert_path), append=True)
    cert.private_key_pem.write_to_path(str(key_path))
    return ca, cert_path, key_path


@pytest.mark.parametrize("client_kind", NETWORK_KINDS)
async def test_tls_round_trip(client_kind: str, tls_ca: Any, asyncio_loop: Any) -> None:
    ca, cert_path, key_path = tls_ca
    context = ssl.create_default_context()
    ca.configure_trust(context)
    config = replace(ServerConfig(port=0), tls_cert=cert_path, tls_key=key_path)
    async with threaded_server(config) as server:
        assert server.url.startswith("minibrokers://")
        opener = make_opener(client_kind, server.url, loop=asyncio_loop)
        async with opener(ssl_context=context, namespace="tls") as mb:
            assert await mb.call("ping", b"secret" * 1000) == b"secret" * 1000
            payloads = [b"%d" % i for i in range(100)]
            assert await mb.gather([spec("ping", p) for p in payloads]) == payloads
        # Without trusting the CA, the certificate is refused.
        with pytest.raises(ssl.SSLCertVerificationError):
            async with opener(namespace="tls"):
                pytest.fail("connected to an untrusted server")
