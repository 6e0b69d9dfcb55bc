"""The Trio client: a call that finds nobody reading reads its own answer.

On TCP, the caller's task reads the socket itself while it is the only one
waiting, so the reply wakes it directly instead of waking the reader task,
which then wakes the caller (a scheduler round per request; see
docs/internals.md, "Latency"). These tests stage, with the scripted fake
broker, every hand-over that design needs: other calls meeting a direct
reader, a direct reader cancelled or cut off, pushes arriving meanwhile, and
answers to posted calls that nobody awaits.
"""

from __future__ import annotations

from typing import Any

import trio
from fake_broker import FakeBroker, items_parser, script

import minibroker
from minibroker.client.protocol import Call
from minibroker.client.rpc import IncomingRequest
from minibroker.errors import ConnectionClosed

SAFETY = 30.0


def _dispatching_tasks(mb: Any) -> list[str]:
    """Record the name of each task that dispatches a chunk the socket delivered."""
    names: list[str] = []
    receive = mb._conn.receive_data

    def recording(data: bytes) -> None:
        names.append(trio.lowlevel.current_task().name)
        receive(data)

    mb._conn.receive_data = recording
    return names


async def _hold_id(fake_broker: FakeBroker, index: int = 0) -> int:
    """The request id of the ``index``-th ``hold`` call the fake broker received."""
    frames = await trio.to_thread.run_sync(fake_broker.wait_for, "hold", index + 1)
    return int(frames[index]["id"])


async def test_a_lone_call_reads_its_own_answer_in_its_own_task(fake_broker: FakeBroker) -> None:
    async with minibroker.connect(fake_broker.url) as mb:
        names = _dispatching_tasks(mb)
        assert await mb.ping(b"a") == b"a"
        assert await mb.ping(b"b") == b"b"
        me = trio.lowlevel.current_task().name
        assert names == [me, me]
        assert not mb._reading  # given back: the reader task is parked


async def test_calls_meeting_a_direct_reader_are_answered_and_it_hands_over(
    fake_broker: FakeBroker,
) -> None:
    results: dict[str, Any] = {}
    first_done = trio.Event()

    async def hold(name: str) -> None:
        results[name] = await mb._call(Call("hold", {}))
        if name == "first":
            first_done.set()

    with trio.fail_after(SAFETY):
        async with minibroker.connect(fake_broker.url) as mb, trio.open_nursery() as nursery:
            names = _dispatching_tasks(mb)
            nursery.start_soon(hold, "first", name="first")
            first_id = await _hold_id(fake_broker)
            assert mb._reading  # the first caller reads for everyone now
            assert await mb.ping(b"meanwhile") == b"meanwhile"
            assert names == ["first"]  # that answer was dispatched by the first caller
            nursery.start_soon(hold, "second", name="second")
            second_id = await _hold_id(fake_broker, 1)
            fake_broker.send({"op": "ok", "id": first_id, "result": 1})
            await first_done.wait()
            # The first caller is gone: the reader task must read the second answer.
            fake_broker.send({"op": "ok", "id": second_id, "result": 2})
        assert results == {"first": 1, "second": 2}
        assert names[-1].endswith("_reader")


async def test_a_cancelled_direct_reader_hands_the_role_on(fake_broker: FakeBroker) -> None:
    cancelled = trio.CancelScope()
    results: list[Any] = []
    with trio.fail_after(SAFETY):
        async with minibroker.connect(fake_broker.url) as mb:

            async def reader_to_cancel() -> None:
                with cancelled:
                    await mb._call(Call("hold", {}))

            async def waiter() -> None:
                results.append(await mb._call(Call("hold", {})))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader_to_cancel)
                first_id = await _hold_id(fake_broker)
                nursery.start_soon(waiter)
                second_id = await _hold_id(fake_broker, 1)
                cancelled.cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert first_id not in mb._conn.pending  # given up: its late answer is dropped
                assert mb._reading  # the reader task reads for the waiter now
                fake_broker.send({"op": "ok", "id": first_id, "result": "late"})
                fake_broker.send({"op": "ok", "id": second_id, "result": "mine"})
            assert results == ["mine"]
            assert await mb.ping(b"after") == b"after"


async def test_a_lost_connection_ends_a_direct_read_at_once(fake_broker: FakeBroker) -> None:
    with trio.fail_after(SAFETY):
        async with minibroker.connect(fake_broker.url) as mb:
            outcome: list[BaseException] = []

            async def hold() -> None:
                try:
                    await mb._call(Call("hold", {}))
                except ConnectionClosed as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(hold)
                await _hold_id(fake_broker)
                fake_broker.drop()
            assert len(outcome) == 1
            assert mb.closed


async def test_pushes_arriving_during_a_direct_read_reach_their_subscription(
    fake_broker: FakeBroker,
) -> None:
    with trio.fail_after(SAFETY):
        async with minibroker.connect(fake_broker.url) as mb, trio.open_nursery() as nursery:
            results: list[Any] = []

            answered = trio.Event()

            async def hold() -> None:
                results.append(await mb._call(Call("hold", {})))
                answered.set()

            nursery.start_soon(hold)
            first_id = await _hold_id(fake_broker)
            pushes = [{"op": "msg", "sub": 4, "items": ["a", "b"]}]
            call = Call("script", script({"sub": 4}, pushes))
            async with mb._subscription(call, items_parser) as sub:
                assert await sub.__anext__() == "a"
                fake_broker.send({"op": "ok", "id": first_id, "result": None})
                await answered.wait()
                assert results == [None]
                # The subscription outlives that caller: the reader task reads on.
                fake_broker.send({"op": "msg", "sub": 4, "items": ["c"]})
                assert [await sub.__anext__(), await sub.__anext__()] == ["b", "c"]


async def test_answers_to_posted_calls_are_read_while_nothing_else_waits(
    fake_broker: FakeBroker,
) -> None:
    with trio.fail_after(SAFETY):
        async with minibroker.connect(fake_broker.url) as mb:
            names = _dispatching_tasks(mb)
            mb._post(Call("hold", {}))
            request_id = await _hold_id(fake_broker)
            # Unread answers would pile up in the socket: the reader task reads them.
            assert mb._reading
            assert list(mb._conn.pending) == [request_id]
            fake_broker.send({"op": "ok", "id": request_id, "result": None})
            while mb._conn.pending:
                await trio.testing.wait_all_tasks_blocked()
            assert names and names[-1].endswith("_reader")
            assert await mb.ping(b"after") == b"after"


async def test_a_responders_replies_are_quiet_and_leave_nothing_pending(
    fake_broker: FakeBroker,
) -> None:
    # reply() without confirm asks the broker for no answer: nothing to read, nothing pending.
    with trio.fail_after(SAFETY):
        async with minibroker.connect(fake_broker.url) as mb:
            request = IncomingRequest(7, "svc", b"q", None, 5.0, mb)
            await request.reply(b"a")
            (sent,) = await trio.to_thread.run_sync(fake_broker.wait_for, "reply")
            assert sent["rid"] == 7 and sent["confirm"] is False
            assert not mb._conn.pending
            assert not mb._reading  # nothing waits for input
