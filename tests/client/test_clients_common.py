"""The same client-level tests against the Trio, asyncio, blocking and in-process clients.

Every test takes the ``client`` fixture (or ``open_client``) from conftest.py,
which is parametrized over the four clients; call API methods by name:
``await client.call("ping", b"x")``. Tests marked with
``@pytest.mark.parametrize("client_kind", NETWORK_KINDS)`` run only against the
TCP clients (they need the scripted fake broker or TLS).
"""

from __future__ import annotations

import ssl
from functools import partial
from typing import Any

import pytest
import trio
import trustme
from client_facades import (
    NETWORK_KINDS,
    SAFETY,
    ClientFacade,
    make_opener,
    opener_for,
    spec,
    threaded_server,
)
from fake_broker import items_parser, script

from minibroker.client.protocol import Call
from minibroker.client.pushes import SubscriptionEnded
from minibroker.client.queues import QueueContents, QueueInfo, QueueStats
from minibroker.config import ServerConfig
from minibroker.embedded import open_broker
from minibroker.errors import (
    BadRequest,
    BrokerError,
    Conflict,
    ConnectionClosed,
    InvalidName,
    NotFound,
    Overflow,
    ShuttingDown,
    TooLarge,
    Unauthorized,
    UnknownDelivery,
    UnknownOp,
)
from minibroker.testing import fresh_namespace
from minibroker.value_class import replace

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
    async with opener_for(client_kind, config, asyncio_loop) as opener:
        yield opener


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


# ------------------------------------------------------------------ queues
#
# The queue API through every client. Calls go through the facade by name;
# scenarios that drive the ``consume`` helper or settle Delivery objects run
# where the client lives (``in_client``): a Trio task, a coroutine on the
# asyncio loop, or a worker thread for the blocking client.


def numbered(count: int, prefix: bytes = b"m") -> list[bytes]:
    return [b"%s-%05d" % (prefix, i) for i in range(count)]


async def advance(client: ClientFacade, seconds: float) -> None:
    """Move the broker's clock, then make sure the timers that fell due have run.

    The jump only wakes the broker's timer task; a ping read by the broker
    in the same scheduler round as that wake-up is answered after it, so once
    the ping's answer is in, every due timer has fired.
    """
    await client.advance(seconds)
    await client.call("ping")


async def in_client(
    client: ClientFacade, run_async: Any, run_sync: Any, *args: Any, **kwargs: Any
) -> Any:
    """``run_async(mb, ...)`` on the Trio or asyncio client, ``run_sync`` on the blocking one."""
    if client.kind in ("trio", "in-process"):
        return await run_async(client.client, *args, **kwargs)
    if client.kind == "asyncio":
        coroutine = run_async(client.client, *args, **kwargs)
        return await client._loop.run(coroutine)  # type: ignore[attr-defined]
    return await trio.to_thread.run_sync(partial(run_sync, client.client, *args, **kwargs))


async def _settle_async(deliveries: list[Any], how: str) -> None:
    for d in deliveries:
        await (d.ack() if how == "ack" else d.nack(requeue=how == "requeue"))


def _settle_sync(deliveries: list[Any], how: str) -> None:
    for d in deliveries:
        d.ack() if how == "ack" else d.nack(requeue=how == "requeue")


async def settle(client: ClientFacade, deliveries: list[Any], how: str) -> None:
    """``d.ack()`` / ``d.nack()`` on each delivery, the way this client's deliveries do it."""
    if client.kind in ("trio", "in-process"):
        await _settle_async(deliveries, how)
    elif client.kind == "asyncio":
        await client._loop.run(_settle_async(deliveries, how))  # type: ignore[attr-defined]
    else:
        await trio.to_thread.run_sync(_settle_sync, deliveries, how)


async def settled_stats(client: ClientFacade, queue: str) -> QueueStats:
    """Stats once a consumer that just ended has given everything back.

    A fetch still in flight when a consumer ends is answered later; the
    client nacks what it brings as soon as the answer is read, before it
    reads anything after it. A ping sent now is answered after that fetch,
    so the stats asked for after the ping see the nack.
    """
    await client.call("ping")
    stats: QueueStats = await client.call("queue_stats", queue)
    return stats


async def test_queue_round_trip_through_every_client(client: ClientFacade) -> None:
    assert await client.call("declare_queue", "jobs", visibility_timeout=60) is True
    assert await client.call("declare_queue", "jobs", visibility_timeout=60) is False
    with pytest.raises(Conflict) as conflict:
        await client.call("declare_queue", "jobs")
    assert conflict.value.details["options"]["visibility_timeout"] == 60
    assert await client.call("put", "jobs", b"one", headers={"k": "v"}) is None
    items = [b"two", (b"three", {"h": "3"}), {"body": b"four"}, bytearray(b"five")]
    assert await client.call("put_many", "jobs", items) == 4

    batch = await client.call("fetch", "jobs", max_messages=3)
    assert [(d.body, d.headers) for d in batch] == [
        (b"one", {"k": "v"}),
        (b"two", None),
        (b"three", {"h": "3"}),
    ]
    assert all(d.queue == "jobs" and d.delivery_count == 1 and not d.redelivered for d in batch)
    assert len({d.delivery_id for d in batch}) == 3
    assert batch[0].published_at > 1_600_000_000_000  # ms since the epoch

    contents = await client.call("inspect_queue", "jobs")
    assert isinstance(contents, QueueContents)
    assert [m.body for m in contents.ready] == [b"four", b"five"]
    assert [m.delivery_id for m in contents.in_flight] == [d.delivery_id for d in batch]
    assert all(m.visible_in is not None and 0 < m.visible_in <= 60 for m in contents.in_flight)

    assert await client.call("ack", batch[:2]) == 2
    assert await client.call("nack", batch[2]) == 1  # back to the front
    again = await client.call("fetch", "jobs", max_messages=10)
    assert [(d.body, d.delivery_count) for d in again] == [
        (b"three", 2),
        (b"four", 1),
        (b"five", 1),
    ]
    assert again[0].redelivered
    assert await client.call("ack", "jobs", [d.delivery_id for d in again]) == 3

    stats = await client.call("queue_stats", "jobs")
    assert isinstance(stats, QueueStats)
    assert (stats.queue, stats.ready, stats.in_flight, stats.published) == ("jobs", 0, 0, 5)
    assert (stats.delivered, stats.redelivered, stats.acked, stats.requeued) == (6, 1, 5, 1)
    assert stats.options["visibility_timeout"] == 60

    await client.call("declare_queue", "a.first", durable=True)
    listing = await client.call("list_queues")
    assert [type(q) for q in listing] == [QueueInfo, QueueInfo]
    assert [(q.queue, q.ready, q.in_flight) for q in listing] == [("a.first", 0, 0), ("jobs", 0, 0)]

    await client.call("put_many", "jobs", [b"x", b"y"])
    assert await client.call("purge_queue", "jobs") == 2
    await client.call("put", "jobs", b"z")
    assert await client.call("delete_queue", "jobs") == 1
    with pytest.raises(NotFound):
        await client.call("fetch", "jobs")


async def test_deliveries_ack_and_nack_themselves(client: ClientFacade) -> None:
    await client.call("declare_queue", "self")
    await client.call("put_many", "self", numbered(3))
    first, second, third = await client.call("fetch", "self", max_messages=3)
    await settle(client, [first], "ack")
    await settle(client, [second], "requeue")
    await settle(client, [third], "reject")  # no dead-letter queue: dropped
    stats = await client.call("queue_stats", "self")
    assert (stats.acked, stats.requeued, stats.dropped, stats.ready) == (1, 1, 1, 1)
    with pytest.raises(UnknownDelivery):  # already settled
        await settle(client, [first], "ack")
    (back,) = await client.call("fetch", "self", max_messages=5)
    assert (back.body, back.delivery_count) == (b"m-00001", 2)


async def test_competing_consumers_get_disjoint_messages(open_client: Any) -> None:
    namespace = fresh_namespace("compete")
    sent = numbered(300)
    got: dict[str, list[bytes]] = {"a": [], "b": []}

    async def drain(name: str, mb: ClientFacade) -> None:
        while batch := await mb.call("fetch", "work", max_messages=7):
            got[name].extend(d.body for d in batch)
            await mb.call("ack", batch)

    async with open_client(namespace=namespace) as a, open_client(namespace=namespace) as b:
        await a.call("declare_queue", "work")
        await a.call("put_many", "work", sent)
        with trio.fail_after(SAFETY):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain, "a", a)
                nursery.start_soon(drain, "b", b)
        assert not set(got["a"]) & set(got["b"])
        assert sorted(got["a"] + got["b"]) == sent
        assert (await a.call("queue_stats", "work")).acked == 300


async def test_a_consumer_that_disconnects_mid_batch_has_its_messages_redelivered(
    open_client: Any,
) -> None:
    namespace = fresh_namespace("gone")
    async with open_client(namespace=namespace) as survivor:
        await survivor.call("declare_queue", "work")
        await survivor.call("put_many", "work", numbered(10))
        async with open_client(namespace=namespace) as doomed:
            held = await doomed.call("fetch", "work", max_messages=6)
            await doomed.call("ack", held[:2])
        # Its connection closed holding four: they come back at once, at the front.
        received: list[Any] = []
        with trio.fail_after(SAFETY):
            while len(received) < 8:
                received += await survivor.call("fetch", "work", max_messages=10, wait=SAFETY)
        counts = {d.body: d.delivery_count for d in received}
        assert sorted(counts) == numbered(10)[2:]
        assert [counts[body] for body in numbered(10)[2:6]] == [2, 2, 2, 2]
        assert await survivor.call("ack", received) == 8


async def test_visibility_timeout_redelivers_with_a_higher_count(
    client: ClientFacade, mock_clock: Any
) -> None:
    await client.call("declare_queue", "vt", visibility_timeout=5)
    await client.call("put", "vt", b"slow")
    first = await client.call("fetch", "vt")
    await advance(client, 4)
    assert await client.call("fetch", "vt") == []
    await advance(client, 2)
    again = await client.call("fetch", "vt", visibility_timeout=100)
    assert [(d.body, d.delivery_count) for d in again] == [(b"slow", 2)]
    with pytest.raises(UnknownDelivery) as stale:
        await client.call("ack", first)
    assert stale.value.details["deliveries"] == [first[0].delivery_id]
    await advance(client, 50)  # its own visibility timeout is 100 s
    assert await client.call("ack", again) == 1


async def test_expired_messages_are_dead_lettered(client: ClientFacade, mock_clock: Any) -> None:
    await client.call("declare_queue", "ttl", message_ttl=10, dead_letter_queue="ttl.dead")
    await client.call("declare_queue", "ttl.dead")
    await client.call("put", "ttl", b"old")
    await advance(client, 6)
    await client.call("put", "ttl", b"young")
    await advance(client, 5)
    assert [d.body for d in await client.call("fetch", "ttl", max_messages=10)] == [b"young"]
    (dead,) = await client.call("fetch", "ttl.dead", max_messages=10)
    assert dead.body == b"old"
    assert dead.headers == {
        "x-death-reason": "expired",
        "x-death-queue": "ttl",
        "x-death-count": "0",
        "x-death-hops": "1",
        "x-death-path": "ttl",
    }
    stats = await client.call("queue_stats", "ttl")
    assert (stats.expired, stats.dead_lettered) == (1, 1)


async def test_nack_delay_then_max_deliveries_dead_letters(
    client: ClientFacade, mock_clock: Any
) -> None:
    await client.call("declare_queue", "dlq")
    await client.call("declare_queue", "retry", max_deliveries=2, dead_letter_queue="dlq")
    await client.call("put", "retry", b"job")
    first = await client.call("fetch", "retry")
    assert await client.call("nack", first, delay=30) == 1
    assert await client.call("fetch", "retry") == []
    assert (await client.call("queue_stats", "retry")).delayed == 1
    await advance(client, 31)
    second = await client.call("fetch", "retry")
    assert second[0].delivery_count == 2
    await client.call("nack", second)  # its second delivery came back: dead-lettered
    assert await client.call("fetch", "retry") == []
    (dead,) = await client.call("fetch", "dlq")
    assert dead.headers == {
        "x-death-reason": "max_deliveries",
        "x-death-queue": "retry",
        "x-death-count": "2",
        "x-death-hops": "1",
        "x-death-path": "retry",
    }
    assert (dead.body, dead.published_at) == (b"job", first[0].published_at)


async def test_bad_queue_requests_get_clear_errors_and_change_nothing(
    client: ClientFacade,
) -> None:
    for method, args in [
        ("fetch", ("missing",)),
        ("put", ("missing", b"x")),
        ("ack", ("missing", [1])),
        ("queue_stats", ("missing",)),
        ("purge_queue", ("missing",)),
        ("delete_queue", ("missing",)),
        ("inspect_queue", ("missing",)),
    ]:
        with pytest.raises(NotFound):
            await client.call(method, *args)
    for name in ["bad name", "a*", "", "x" * 256]:
        with pytest.raises(InvalidName):
            await client.call("declare_queue", name)
    bad_options: list[dict[str, Any]] = [
        {"max_length": "10"},
        {"max_length": -1},
        {"max_length": 2**60},
        {"overflow": "sideways"},
        {"message_ttl": 0.0001},  # 0 is valid ("now or never"), below 1 ms is not
        {"message_ttl": -5},
        {"visibility_timeout": 0},
        {"visibility_timeout": float("nan")},
        {"visibility_timeout": 10**9},
        {"visibility_timeout": "30"},
        {"max_deliveries": 0},
        {"max_deliveries": 1.5},
        {"dead_letter_queue": "q"},
        {"durable": "yes"},
    ]
    for options in bad_options:
        with pytest.raises(BadRequest):
            await client.call("declare_queue", "q", **options)
    assert await client.call("list_queues") == []  # none of that created anything

    await client.call("declare_queue", "q")
    await client.call("put_many", "q", numbered(3))
    for fetch_args in [
        {"max_messages": 0},
        {"max_messages": -1},
        {"max_messages": 10**9},
        {"max_messages": "5"},
        {"wait": -1},
        {"wait": 10**7},
        {"visibility_timeout": 0},
    ]:
        with pytest.raises(BadRequest):
            await client.call("fetch", "q", **fetch_args)
    with pytest.raises(BadRequest):
        await client.call("inspect_queue", "q", limit=-1)
    with pytest.raises(UnknownDelivery) as unknown:
        await client.call("ack", "q", [987654321])
    assert unknown.value.details == {"queue": "q", "deliveries": [987654321]}
    (held,) = await client.call("fetch", "q")
    with pytest.raises(BadRequest):
        await client.call("nack", held, delay=-1)
    with pytest.raises(TypeError):
        await client.call("put", "q", "text is not bytes")
    too_big = b"x" * (client.server_info["limits"]["max_message_bytes"] + 1)
    with pytest.raises(TooLarge):
        await client.call("put_many", "q", [b"fine", too_big])
    stats = await client.call("queue_stats", "q")
    assert (stats.published, stats.ready, stats.in_flight, stats.acked) == (3, 2, 1, 0)

    await client.call("declare_queue", "small", max_length=2)
    with pytest.raises(Overflow) as full:
        await client.call("put_many", "small", numbered(3))
    assert full.value.details == {"queue": "small", "max_length": 2, "ready": 0}
    assert (await client.call("queue_stats", "small")).ready == 0


async def test_max_length_bytes_bounds_the_body_bytes_of_ready_messages(
    client: ClientFacade,
) -> None:
    """The byte limit AMQP had as x-max-length-bytes, on the native protocol:
    ``overflow`` applies to it as to ``max_length``."""
    for bad in ("10", -1, 2**60):
        with pytest.raises(BadRequest):
            await client.call("declare_queue", "q", max_length_bytes=bad)
    assert await client.call("declare_queue", "bytes", max_length_bytes=10)
    await client.call("put_many", "bytes", [b"12345", b"6789"])
    with pytest.raises(Overflow) as full:
        await client.call("put_many", "bytes", [b"a", b"bc"])  # the whole batch is refused
    assert full.value.details == {
        "queue": "bytes",
        "ready": 2,
        "ready_bytes": 9,
        "max_length_bytes": 10,
    }
    await client.call("put", "bytes", b"0")  # exactly at the limit is fine
    stats = await client.call("queue_stats", "bytes")
    assert (stats.ready, stats.rejected_publishes) == (3, 2)
    assert stats.options["max_length_bytes"] == 10
    assert not await client.call("declare_queue", "bytes", max_length_bytes=10)
    with pytest.raises(Conflict):
        await client.call("declare_queue", "bytes", max_length_bytes=11)

    await client.call("declare_queue", "trimmed", max_length_bytes=10, overflow="drop_head")
    await client.call("put_many", "trimmed", [b"12345", b"67890", b"abc"])
    contents = await client.call("inspect_queue", "trimmed")
    assert [m.body for m in contents.ready] == [b"67890", b"abc"]
    assert (await client.call("queue_stats", "trimmed")).dropped == 1


async def test_a_connection_cannot_settle_another_ones_deliveries(open_client: Any) -> None:
    namespace = fresh_namespace("mine")
    async with open_client(namespace=namespace) as a, open_client(namespace=namespace) as b:
        await a.call("declare_queue", "q")
        await a.call("put_many", "q", numbered(2))
        held = await a.call("fetch", "q", max_messages=2)
        ids = [d.delivery_id for d in held]
        with pytest.raises(UnknownDelivery) as refused:
            await b.call("ack", "q", ids)
        assert refused.value.details["deliveries"] == ids
        with pytest.raises(UnknownDelivery):
            await b.call("nack", held, requeue=False)
        assert (await b.call("queue_stats", "q")).in_flight == 2
        assert await a.call("ack", held) == 2


async def _consume_n(mb: Any, queue: str, count: int, **options: Any) -> dict[str, Any]:
    bodies: list[bytes] = []
    async with mb.consume(queue, **options) as consumer:
        async for d in consumer:
            bodies.append(d.body)
            await d.ack()
            if len(bodies) == count:
                break
    return {"bodies": bodies, "acked": consumer.acked, "pending": consumer.pending_acks}


def _consume_n_sync(mb: Any, queue: str, count: int, **options: Any) -> dict[str, Any]:
    bodies: list[bytes] = []
    with mb.consume(queue, **options) as consumer:
        for d in consumer:
            bodies.append(d.body)
            d.ack()
            if len(bodies) == count:
                break
    return {"bodies": bodies, "acked": consumer.acked, "pending": consumer.pending_acks}


async def test_consume_acks_everything_and_loses_nothing(client: ClientFacade) -> None:
    await client.call("declare_queue", "stream")
    sent = numbered(2500)
    for start in range(0, len(sent), 1000):
        await client.call("put_many", "stream", sent[start : start + 1000])
    with trio.fail_after(SAFETY):
        result = await in_client(
            client, _consume_n, _consume_n_sync, "stream", 2500, prefetch=300, ack_every=64
        )
    assert result["bodies"] == sent  # one consumer, nothing redelivered: FIFO
    assert (result["acked"], result["pending"]) == (2500, 0)
    stats = await settled_stats(client, "stream")
    assert (stats.acked, stats.ready, stats.in_flight, stats.redelivered) == (2500, 0, 0, 0)


async def _consume_partly(mb: Any, queue: str) -> dict[str, Any]:
    taken: list[Any] = []
    async with mb.consume(queue, prefetch=20, ack_every=1000) as consumer:
        async for d in consumer:
            taken.append(d)
            if len(taken) == 5:
                break
        for d in taken[:4]:
            await d.ack()
        await taken[4].nack()
    return {"acked": consumer.acked}


def _consume_partly_sync(mb: Any, queue: str) -> dict[str, Any]:
    taken: list[Any] = []
    with mb.consume(queue, prefetch=20, ack_every=1000) as consumer:
        for d in consumer:
            taken.append(d)
            if len(taken) == 5:
                break
        for d in taken[:4]:
            d.ack()
        taken[4].nack()
    return {"acked": consumer.acked}


async def test_leaving_consume_gives_back_what_was_not_handed_out(client: ClientFacade) -> None:
    await client.call("declare_queue", "partial")
    await client.call("put_many", "partial", numbered(40))
    with trio.fail_after(SAFETY):
        result = await in_client(client, _consume_partly, _consume_partly_sync, "partial")
    assert result["acked"] == 4
    stats = await settled_stats(client, "partial")
    assert (stats.acked, stats.in_flight, stats.ready) == (4, 0, 36)
    # What came back is at the front (redeliveries keep no order among
    # themselves), and nothing was lost.
    rest = await client.call("fetch", "partial", max_messages=100)
    assert sorted(d.body for d in rest[:16]) == numbered(40)[4:20]
    assert [d.body for d in rest[16:]] == numbered(40)[20:]


async def _consume_with_a_stale_ack(mb: Any, queue: str) -> dict[str, Any]:
    taken: list[Any] = []
    async with mb.consume(queue, prefetch=6, ack_every=100) as consumer:
        async for d in consumer:
            taken.append(d)
            if len(taken) == 6:
                break
        await mb.nack(taken[0])  # settled behind the consumer's back: its id goes stale
        for d in taken:
            await d.ack()
    return {"acked": consumer.acked, "stale": consumer.stale_acks}


def _consume_with_a_stale_ack_sync(mb: Any, queue: str) -> dict[str, Any]:
    taken: list[Any] = []
    with mb.consume(queue, prefetch=6, ack_every=100) as consumer:
        for d in consumer:
            taken.append(d)
            if len(taken) == 6:
                break
        mb.nack(taken[0])
        for d in taken:
            d.ack()
    return {"acked": consumer.acked, "stale": consumer.stale_acks}


async def test_a_stale_ack_does_not_sink_the_rest_of_its_batch(client: ClientFacade) -> None:
    await client.call("declare_queue", "stale")
    await client.call("put_many", "stale", numbered(6))
    with trio.fail_after(SAFETY):
        result = await in_client(
            client, _consume_with_a_stale_ack, _consume_with_a_stale_ack_sync, "stale"
        )
    assert result == {"acked": 5, "stale": 1}
    stats = await settled_stats(client, "stale")
    assert (stats.acked, stats.ready, stats.in_flight) == (5, 1, 0)


async def _consume_missing(mb: Any) -> BaseException | None:
    try:
        async with mb.consume("missing") as consumer:
            async for _ in consumer:
                pass
    except NotFound as exc:
        return exc
    return None


def _consume_missing_sync(mb: Any) -> BaseException | None:
    try:
        with mb.consume("missing") as consumer:
            for _ in consumer:
                pass
    except NotFound as exc:
        return exc
    return None


async def test_consume_reports_a_missing_queue_and_bad_arguments(client: ClientFacade) -> None:
    with trio.fail_after(SAFETY):
        error = await in_client(client, _consume_missing, _consume_missing_sync)
    assert isinstance(error, NotFound)
    for options in [{"prefetch": 0}, {"ack_every": 0}, {"prefetch": "many"}]:
        with pytest.raises(ValueError):
            await client.call("consume", "q", **options)
    assert await client.call("ping", b"fine") == b"fine"


async def _drain(mb: Any, queue: str) -> list[bytes]:
    bodies: list[bytes] = []
    async with mb.consume(queue, prefetch=64, wait=0) as consumer:
        async for d in consumer:
            bodies.append(d.body)
            await d.ack()
    return bodies


def _drain_sync(mb: Any, queue: str) -> list[bytes]:
    bodies: list[bytes] = []
    with mb.consume(queue, prefetch=64, wait=0) as consumer:
        for d in consumer:
            bodies.append(d.body)
            d.ack()
    return bodies


async def test_consume_with_no_wait_drains_the_queue_and_stops(client: ClientFacade) -> None:
    await client.call("declare_queue", "drain")
    await client.call("put_many", "drain", numbered(500))
    with trio.fail_after(SAFETY):
        assert await in_client(client, _drain, _drain_sync, "drain") == numbered(500)
        assert await in_client(client, _drain, _drain_sync, "drain") == []
    stats = await settled_stats(client, "drain")
    assert (stats.acked, stats.ready, stats.in_flight) == (500, 0, 0)


async def _consume_one(mb: Any, queue: str) -> tuple[bytes, int]:
    async with mb.consume(queue, prefetch=1) as consumer:
        async for d in consumer:
            await d.ack()
            return d.body, d.delivery_count
    raise AssertionError("the consumer ended without a delivery")


def _consume_one_sync(mb: Any, queue: str) -> tuple[bytes, int]:
    with mb.consume(queue, prefetch=1) as consumer:
        for d in consumer:
            d.ack()
            return d.body, d.delivery_count
    raise AssertionError("the consumer ended without a delivery")


async def test_a_consumer_that_leaves_withdraws_its_parked_fetch(client: ClientFacade) -> None:
    """Leaving ``consume`` cancels the long poll still parked on the broker, so a
    message put afterwards is never delivered to the consumer that left: its
    delivery count, and with it ``max_deliveries``, is untouched."""
    await client.call("declare_queue", "ghost.dead")
    await client.call("declare_queue", "ghost", max_deliveries=2, dead_letter_queue="ghost.dead")
    with trio.fail_after(SAFETY):
        for round_ in range(3):
            batch = numbered(2, b"round%d" % round_)
            await client.call("put_many", "ghost", batch)
            # prefetch=2: fetches of one; after two full ones the consumer keeps two
            # in flight, so when it leaves, one of them is parked on the empty queue.
            result = await in_client(
                client, _consume_n, _consume_n_sync, "ghost", 2, prefetch=2, wait=SAFETY
            )
            assert result["bodies"] == batch
            # Leaving waited for the cancel's answer: nothing is parked any more.
            assert (await client.call("queue_stats", "ghost")).waiting_fetches == 0
        await client.call("put", "ghost", b"late")
        got = await in_client(client, _consume_one, _consume_one_sync, "ghost")
    assert got == (b"late", 1)
    stats = await settled_stats(client, "ghost")
    assert (stats.acked, stats.requeued, stats.dead_lettered, stats.ready) == (7, 0, 0, 0)
    assert (stats.waiting_fetches, stats.in_flight) == (0, 0)


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("put", ("jobs", "text")),
        ("put_many", ("jobs", ["text"])),
        ("put_many", ("jobs", [("text", {"h": "v"})])),
        ("publish", ("news", "text")),
        ("publish_many", ("news", ["text"])),
        ("publish_many", ("news", [("text", None)])),
        ("append", ("events", "text")),
        ("append_many", ("events", ["text"])),
        ("append_many", ("events", [{"body": b"x", "key": "text"}])),
        ("request", ("svc", "text")),
    ],
)
async def test_a_str_body_is_refused_the_same_way_everywhere(
    client: ClientFacade, method: str, args: tuple[Any, ...]
) -> None:
    """One rule: bodies (and record keys) are bytes; a str is a TypeError that
    says to encode it, whatever the method, and nothing reaches the broker."""
    await client.call("declare_queue", "jobs")
    await client.call("create_log", "events")
    with pytest.raises(TypeError, match=r"are bytes, not str: encode the text first"):
        await client.call(method, *args)
    assert (await client.call("queue_stats", "jobs")).ready == 0
    assert (await client.call("log_stats", "events")).next_offset == 0


@pytest.mark.parametrize("how", ["ack", "requeue"])
async def test_settling_a_delivery_twice_says_it_was_already_settled(
    client: ClientFacade, how: str
) -> None:
    await client.call("declare_queue", "q")
    await client.call("put", "q", b"once")
    deliveries = await client.call("fetch", "q")
    await settle(client, deliveries, how)
    with pytest.raises(UnknownDelivery, match=r"was already (acked|nacked) by this client"):
        await settle(client, deliveries, "ack")
    stats = await client.call("queue_stats", "q")
    assert (stats.acked, stats.requeued) == ((1, 0) if how == "ack" else (0, 1))
