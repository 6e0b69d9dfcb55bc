"""Request/reply end to end on an in-process broker: real sessions, Trio clients.

Time-dependent cases run under Trio's MockClock with autojump, so a 30 s
deadline passes instantly and nothing here sleeps on the wall clock.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from prometheus_client.exposition import generate_latest

import minibroker
from minibroker.client.rpc import IncomingRequest, Reply
from minibroker.config import ServerConfig
from minibroker.core.config import Limits
from minibroker.core.rpc import RequestRouter
from minibroker.embedded import EmbeddedBroker
from minibroker.errors import (
    BadRequest,
    InvalidName,
    LimitExceeded,
    NoResponders,
    ResponderError,
    ResponderGone,
    Timeout,
    TooLarge,
)

Pair = tuple[minibroker.Client, minibroker.Client]


@pytest.fixture
async def pair(minibroker_broker: EmbeddedBroker) -> AsyncIterator[Pair]:
    """A requester and a responder connection to the test's broker."""
    async with minibroker_broker.connect() as requester, minibroker_broker.connect() as responder:
        yield requester, responder


def router(broker: EmbeddedBroker) -> RequestRouter:
    return broker.core.namespace().rpc


async def echo_loop(requests: AsyncIterator[IncomingRequest]) -> None:
    async for req in requests:
        await req.reply(req.body, req.headers)


async def test_a_request_gets_the_responders_reply(
    minibroker_broker: EmbeddedBroker, pair: Pair
) -> None:
    requester, responder = pair
    async with responder.respond("svc.echo") as requests, trio.open_nursery() as nursery:
        nursery.start_soon(echo_loop, requests)
        reply = await requester.request("svc.echo", b"hi", headers={"trace": "1"})
        assert reply == Reply(b"hi", {"trace": "1"})
        assert await requester.request("svc.echo") == Reply(b"", None)
        nursery.cancel_scope.cancel()
    assert router(minibroker_broker).stats.outcomes["ok"] == 2


async def test_no_responders_fails_at_once(minibroker_broker: EmbeddedBroker) -> None:
    async with minibroker_broker.connect() as mb:
        start = trio.current_time()
        with pytest.raises(NoResponders):
            await mb.request("svc.nobody", b"x", timeout=60)
        with pytest.raises(NoResponders):
            async with mb.respond("svc.other"):
                await mb.request("svc.nobody")
        assert trio.current_time() - start < 5


async def test_bad_requests_are_refused_and_the_connection_stays_usable(
    minibroker_broker: EmbeddedBroker,
) -> None:
    async with minibroker_broker.connect() as mb:
        with pytest.raises(InvalidName):
            await mb.request("svc.*")
        with pytest.raises(InvalidName):
            async with mb.respond("bad subject"):
                pass
        async with mb.respond("svc.ok"):
            with pytest.raises(BadRequest):
                await mb.request("svc.ok", timeout=0)
            with pytest.raises(BadRequest):
                await mb.request("svc.ok", timeout=-1)
        assert await mb.ping(b"still here") == b"still here"
    assert router(minibroker_broker).snapshot().pending == 0


async def test_timeout_under_mock_clock(
    autojump_clock: trio.testing.MockClock, minibroker_broker: EmbeddedBroker, pair: Pair
) -> None:
    requester, responder = pair
    async with responder.respond("svc.slow") as requests:
        start = trio.current_time()
        with pytest.raises(Timeout):
            await requester.request("svc.slow", b"x", timeout=30)
        assert trio.current_time() - start == pytest.approx(30, abs=0.01)
        seen = await requests.__anext__()
        assert seen.body == b"x"
        assert seen.timeout == 30
    stats = router(minibroker_broker).stats
    assert stats.outcomes["timeout"] == 1
    assert router(minibroker_broker).snapshot().pending == 0


async def test_a_late_reply_is_dropped_counted_and_not_an_error(
    autojump_clock: trio.testing.MockClock, minibroker_broker: EmbeddedBroker, pair: Pair
) -> None:
    requester, responder = pair
    async with responder.respond("svc.slow") as requests, trio.open_nursery() as nursery:

        async def slow_responder() -> None:
            confirm = True
            async for req in requests:
                await trio.sleep(10)
                if confirm:  # the broker says the reply found nobody
                    assert await req.reply(b"too late", confirm=True) is False
                else:  # fire and forget: no answer awaited, no error either
                    await req.reply(b"too late")
                confirm = False

        nursery.start_soon(slow_responder)
        with pytest.raises(Timeout):
            await requester.request("svc.slow", timeout=1)
        await trio.sleep(20)
        assert router(minibroker_broker).stats.replies_dropped == 1
        # The responder loop survived: it keeps serving.
        with pytest.raises(Timeout):
            await requester.request("svc.slow", timeout=1)
        await trio.sleep(20)
        assert router(minibroker_broker).stats.replies_dropped == 2
        nursery.cancel_scope.cancel()


async def test_a_request_is_answered_once(pair: Pair) -> None:
    requester, responder = pair
    async with responder.respond("svc.once") as requests, trio.open_nursery() as nursery:
        nursery.start_soon(requester.request, "svc.once")
        req = await requests.__anext__()
        with pytest.raises(TypeError):
            await req.reply("not bytes")  # type: ignore[call-overload]
        assert not req.answered, "a refused reply leaves the request unanswered"
        await req.reply(b"first")
        with pytest.raises(RuntimeError, match="already answered"):
            await req.reply(b"second")
        with pytest.raises(RuntimeError, match="already answered"):
            await req.fail("third")


async def test_a_reply_over_the_size_limit_is_refused_before_sending() -> None:
    config = ServerConfig(limits=Limits(max_message_bytes=100))
    async with (
        minibroker.open_broker(config=config) as broker,
        broker.connect() as requester,
        broker.connect() as responder,
        responder.respond("svc.big") as requests,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(requester.request, "svc.big")
        req = await requests.__anext__()
        with pytest.raises(TooLarge):
            await req.reply(b"x" * 101)
        await req.reply(b"x" * 100)


async def test_responder_dying_mid_request_fails_it_at_once(
    autojump_clock: trio.testing.MockClock, minibroker_broker: EmbeddedBroker
) -> None:
    async with minibroker_broker.connect() as requester:
        got_request = trio.Event()
        # Only the responder is cancelled: cancelling the nursery the request
        # runs in (as this test once did) cancelled the request too, so
        # Cancelled, not ResponderGone, left ``pytest.raises`` and the
        # nursery swallowed it; now such a request is withdrawn (abandoned).
        doomed = trio.CancelScope()

        async def doomed_responder(task_status: trio.TaskStatus[None]) -> None:
            with doomed:
                async with (
                    minibroker_broker.connect() as responder,
                    responder.respond("svc.doomed") as requests,
                ):
                    task_status.started()
                    await requests.__anext__()
                    got_request.set()
                    await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            await nursery.start(doomed_responder)

            async def kill_when_held() -> None:
                await got_request.wait()
                doomed.cancel()  # the responder's connection closes

            nursery.start_soon(kill_when_held)
            start = trio.current_time()
            with pytest.raises(ResponderGone):
                await requester.request("svc.doomed", timeout=60)
            assert trio.current_time() - start < 1
    assert router(minibroker_broker).stats.outcomes["responder_gone"] == 1
    assert router(minibroker_broker).responder_count() == 0


async def test_responder_unsubscribing_fails_what_it_holds(
    minibroker_broker: EmbeddedBroker,
    pair: Pair,
) -> None:
    requester, responder = pair
    async with trio.open_nursery() as nursery:

        async def hold_one_then_leave() -> None:
            async with responder.respond("svc.flaky") as requests:
                await requests.__anext__()

        nursery.start_soon(hold_one_then_leave)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ResponderGone):
            await requester.request("svc.flaky")


async def test_requester_disconnecting_leaves_no_pending_requests(
    autojump_clock: trio.testing.MockClock, minibroker_broker: EmbeddedBroker
) -> None:
    rpc = router(minibroker_broker)
    async with (
        minibroker_broker.connect() as responder,
        responder.respond("svc.held") as requests,
    ):
        async with minibroker_broker.connect() as requester, trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(requester.request, "svc.held", b"%d" % i, None, 60.0)
            held = [await requests.__anext__() for _ in range(10)]
            assert rpc.snapshot().pending == 10
            nursery.cancel_scope.cancel()
        # The requester's connection is closed now.
        await trio.testing.wait_all_tasks_blocked()
        assert rpc.snapshot().pending == 0
        assert list(rpc.pending_rids()) == []
        assert minibroker_broker.core.timers.next_deadline() is None
        for req in held:
            assert await req.reply(b"nobody listens", confirm=True) is False
    assert rpc.stats.replies_dropped == 10
    assert rpc.stats.outcomes["abandoned"] == 10


async def test_responder_error_is_raised_to_the_requester(
    minibroker_broker: EmbeddedBroker,
    pair: Pair,
) -> None:
    requester, responder = pair
    async with responder.respond("svc.err") as requests, trio.open_nursery() as nursery:

        async def refuse() -> None:
            async for req in requests:
                assert await req.fail(f"cannot handle {req.body.decode()}", confirm=True) is True

        nursery.start_soon(refuse)
        with pytest.raises(ResponderError) as info:
            await requester.request("svc.err", b"this")
        assert info.value.message == "cannot handle this"
        nursery.cancel_scope.cancel()


async def test_pending_request_limit_per_connection() -> None:
    config = ServerConfig(limits=Limits(max_pending_requests_per_connection=3))
    async with (
        minibroker.open_broker(config=config) as broker,
        broker.connect() as requester,
        broker.connect() as responder,
        responder.respond("svc.held"),
        trio.open_nursery() as nursery,
    ):
        for _ in range(3):
            nursery.start_soon(requester.request, "svc.held", b"", None, 60.0)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(LimitExceeded):
            await requester.request("svc.held")
        nursery.cancel_scope.cancel()


async def test_serve_runs_handlers_concurrently(
    minibroker_broker: EmbeddedBroker, pair: Pair
) -> None:
    running = 0
    peak = 0
    all_in = trio.Event()

    async def handler(req: IncomingRequest) -> bytes:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 8:
            all_in.set()
        await all_in.wait()  # each handler waits until all eight run at once
        running -= 1
        return req.body.upper()

    requester, responder = pair
    async with trio.open_nursery() as nursery:
        await nursery.start(responder.serve, "svc.upper", handler)
        replies: dict[int, bytes] = {}

        async def one(i: int) -> None:
            replies[i] = (await requester.request("svc.upper", b"req-%d" % i)).body

        async with trio.open_nursery() as requests:
            for i in range(8):
                requests.start_soon(one, i)
        assert replies == {i: b"REQ-%d" % i for i in range(8)}
        assert peak == 8
        nursery.cancel_scope.cancel()


async def test_serve_concurrency_limit(minibroker_broker: EmbeddedBroker, pair: Pair) -> None:
    running = 0
    peak = 0

    async def handler(req: IncomingRequest) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(0)
        await trio.testing.wait_all_tasks_blocked()
        running -= 1
        await req.reply(b"done")  # answering itself: serve sends nothing more

    requester, responder = pair
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: responder.serve(
                "svc.limited", handler, concurrency=2, task_status=task_status
            )
        )
        async with trio.open_nursery() as requests:
            for _ in range(6):
                requests.start_soon(requester.request, "svc.limited")
        assert peak == 2
        nursery.cancel_scope.cancel()
    assert router(minibroker_broker).stats.replies_dropped == 0


async def test_serve_turns_handler_exceptions_into_responder_errors(
    minibroker_broker: EmbeddedBroker,
    pair: Pair,
) -> None:
    async def handler(req: IncomingRequest) -> Any:
        if req.body == b"expected":
            raise ResponderError("account is locked")
        if req.body == b"headers":
            return Reply(b"with headers", {"status": "200"})
        if req.body == b"wrong type":
            return 42
        raise ValueError("boom")

    requester, responder = pair
    async with trio.open_nursery() as nursery:
        await nursery.start(responder.serve, "svc.h", handler)
        with pytest.raises(ResponderError, match=r"^account is locked$"):
            await requester.request("svc.h", b"expected")
        with pytest.raises(ResponderError, match="ValueError: boom"):
            await requester.request("svc.h", b"bug")
        with pytest.raises(ResponderError, match="TypeError"):
            await requester.request("svc.h", b"wrong type")
        assert await requester.request("svc.h", b"headers") == Reply(
            b"with headers", {"status": "200"}
        )
        nursery.cancel_scope.cancel()


async def test_a_connection_can_answer_its_own_requests(
    minibroker_broker: EmbeddedBroker,
) -> None:
    async with minibroker_broker.connect() as mb, trio.open_nursery() as nursery:

        async def double(req: IncomingRequest) -> bytes:
            return req.body * 2

        await nursery.start(mb.serve, "svc.self", double)
        assert (await mb.request("svc.self", b"ab")).body == b"abab"
        nursery.cancel_scope.cancel()


async def test_groups_share_requests_evenly(minibroker_broker: EmbeddedBroker) -> None:
    counts: dict[str, int] = {}

    def handler_for(name: str) -> Any:
        async def handler(req: IncomingRequest) -> bytes:
            counts[name] = counts.get(name, 0) + 1
            return name.encode()

        return handler

    async with minibroker_broker.connect() as requester, trio.open_nursery() as nursery:
        for name, group in [("a1", "a"), ("a2", "a"), ("b1", "b")]:
            responder = await nursery.start(_connected, minibroker_broker)
            await nursery.start(
                lambda task_status, r=responder, n=name, g=group: r.serve(
                    "svc.g", handler_for(n), group=g, task_status=task_status
                )
            )
        for _ in range(40):
            await requester.request("svc.g")
        assert counts == {"a1": 10, "a2": 10, "b1": 20}
        nursery.cancel_scope.cancel()


async def _connected(
    broker: EmbeddedBroker, task_status: trio.TaskStatus[minibroker.Client]
) -> None:
    async with broker.connect() as client:
        task_status.started(client)
        await trio.sleep_forever()


@pytest.mark.parametrize("seed", range(5))
async def test_concurrent_requests_to_many_responders_each_get_their_own_reply(
    seed: int, autojump_clock: trio.testing.MockClock, minibroker_broker: EmbeddedBroker
) -> None:
    """Property: N concurrent requests from R requesters to M responders (random
    groups, random handling delays) each get exactly the reply to themselves."""
    rng = random.Random(seed)
    n_requesters, n_responders, n_requests = rng.randint(1, 4), rng.randint(1, 6), 200
    answered_by: dict[bytes, int] = {}

    def handler_for(index: int) -> Any:
        async def handler(req: IncomingRequest) -> Reply:
            await trio.sleep(rng.random() * 0.01)
            answered_by[req.body] = index
            return Reply(b"re:" + req.body, {"by": str(index)})

        return handler

    async with trio.open_nursery() as nursery:
        for index in range(n_responders):
            responder = await nursery.start(_connected, minibroker_broker)
            group = rng.choice([None, "g1", "g2"])
            await nursery.start(
                lambda task_status, r=responder, i=index, g=group: r.serve(
                    "svc.prop", handler_for(i), group=g, task_status=task_status
                )
            )
        requesters = [
            await nursery.start(_connected, minibroker_broker) for _ in range(n_requesters)
        ]
        mismatches: list[tuple[bytes, Reply]] = []

        async def one(i: int) -> None:
            body = b"request-%d-%d" % (seed, i)
            await trio.sleep(rng.random() * 0.01)
            reply = await requesters[i % n_requesters].request("svc.prop", body)
            if reply.body != b"re:" + body or reply.headers != {"by": str(answered_by[body])}:
                mismatches.append((body, reply))

        async with trio.open_nursery() as requests:
            for i in range(n_requests):
                requests.start_soon(one, i)
        assert mismatches == []
        assert len(answered_by) == n_requests
        nursery.cancel_scope.cancel()
    rpc = router(minibroker_broker)
    assert rpc.stats.outcomes["ok"] == n_requests
    assert rpc.stats.replies_dropped == 0


async def test_metrics_report_outcomes_latency_and_responders(
    autojump_clock: trio.testing.MockClock, minibroker_broker: EmbeddedBroker, pair: Pair
) -> None:
    requester, responder = pair
    async with responder.respond("svc.m") as requests, trio.open_nursery() as nursery:

        async def answer_first_only() -> None:
            req = await requests.__anext__()
            await req.reply(b"ok")
            await requests.__anext__()  # hold the second one past its deadline
            await trio.sleep_forever()

        nursery.start_soon(answer_first_only)
        await requester.request("svc.m")
        with pytest.raises(Timeout):
            await requester.request("svc.m", timeout=1)
        with pytest.raises(NoResponders):
            await requester.request("svc.none")
        text = generate_latest(minibroker_broker.server.registry).decode()
        nursery.cancel_scope.cancel()
    assert 'minibroker_rpc_requests_total{outcome="ok"} 1.0' in text
    assert 'minibroker_rpc_requests_total{outcome="timeout"} 1.0' in text
    assert 'minibroker_rpc_requests_total{outcome="no_responders"} 1.0' in text
    assert "minibroker_rpc_responders 1.0" in text
    assert 'minibroker_rpc_latency_seconds_count{subject="svc.m"} 1.0' in text
