"""A ``request()`` whose caller gives up is withdrawn from the broker.

Before, a request cancelled in the client (a Trio cancel scope, an asyncio
cancellation, Ctrl-C on the blocking client) stayed parked in the broker
until its own deadline: counted as pending, and its responder, still
holding it, got ``True`` ("a requester got it") for a reply nobody read.
Now the client posts ``request.cancel`` (to a broker that announces it), so
the responder's reply is dropped as a late one: ``reply(confirm=True)`` is
False (docs/request-reply.md, "Giving up").

Each test has a responder on a second connection hold the request, stops
the requester, lets a ``ping`` on the requester's connection make sure the
broker has read everything sent before it, and then answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from typing import Any

import pytest
import trio
from client_facades import SAFETY

import minibroker
import minibroker.aio
from minibroker.client.connection import Connection, PostedCall
from minibroker.client.protocol import Call
from minibroker.client.rpc import request_call


async def test_trio_a_cancelled_request_is_withdrawn(minibroker_url: str) -> None:
    async with (
        minibroker.connect(minibroker_url) as mb,
        minibroker.connect(minibroker_url) as responder,
        responder.respond("svc.w") as requests,
    ):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(mb.request, "svc.w", b"q", None, SAFETY)
                req = await requests.__anext__()
                scope.cancel()
        assert scope.cancelled_caught
        await mb.ping()  # the broker has read the withdrawal
        assert await req.reply(b"nobody waits", confirm=True) is False
        assert not mb._conn.pending  # the answers to both were read and dropped
        # The connection carries on: the next request is answered.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_answer_next, requests)
            assert (await mb.request("svc.w", b"again", timeout=SAFETY)).body == b"again"


async def _answer_next(requests: Any) -> None:
    async for req in requests:
        await req.reply(req.body)
        return


def test_asyncio_a_cancelled_request_is_withdrawn(minibroker_url: str) -> None:
    async def main() -> None:
        async with (
            minibroker.aio.connect(minibroker_url) as mb,
            minibroker.aio.connect(minibroker_url) as responder,
            responder.respond("svc.w") as requests,
        ):
            asking = asyncio.ensure_future(mb.request("svc.w", b"q", timeout=SAFETY))
            req = await requests.__anext__()
            asking.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asking
            await mb.ping()
            assert await req.reply(b"nobody waits", confirm=True) is False
            assert not mb._conn.pending

    asyncio.run(asyncio.wait_for(main(), SAFETY))


def _blocked_reading(thread_id: int) -> bool:
    """True if thread ``thread_id`` waits for an answer in the blocking client
    (polling the socket itself, or on its call's lock)."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        code = frame.f_code
        if code.co_filename.endswith("sync.py") and code.co_name in ("_read_until", "wait"):
            return True
        frame = frame.f_back
    return False


@pytest.mark.skipif(sys.platform == "win32", reason="pthread_kill")
@pytest.mark.parametrize("reader", ["caller", "reader thread"])
def test_blocking_an_interrupted_request_is_withdrawn(minibroker_url: str, reader: str) -> None:
    """Interrupted while it reads its own answer, or while the reader thread
    reads for it (a subscription is open on the connection)."""
    main = threading.get_ident()
    assert threading.current_thread() is threading.main_thread()
    held: list[Any] = []
    answered = threading.Event()
    outcome: list[object] = []

    def hold_then_interrupt(responder: Any) -> None:
        with responder.respond("svc.w") as requests:
            ready.set()
            for req in requests:
                held.append(req)
                break
            # A signal that lands just before the thread enters ``poll`` is
            # handled only when ``poll`` returns (CPython checks signals
            # between bytecodes): under load that can be the call's whole
            # timeout. So, once it is seen blocked, the signal is sent again
            # until the interrupt is taken (the handler raises only once).
            for _ in range(int(SAFETY * 1000)):
                if _blocked_reading(main):
                    break
                threading.Event().wait(0.001)
            while not interrupted.is_set() and not answered.is_set():
                signal.pthread_kill(main, signal.SIGINT)
                interrupted.wait(0.05)
            answered.wait(SAFETY)
            outcome.append(held[0].reply(b"nobody waits", confirm=True))

    ready = threading.Event()
    interrupted = threading.Event()

    def interrupt_once(signum: int, frame: Any) -> None:
        if not interrupted.is_set():
            interrupted.set()
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt_once)
    with (
        minibroker.connect_sync(minibroker_url) as mb,
        minibroker.connect_sync(minibroker_url) as responder,
    ):
        helper = threading.Thread(target=hold_then_interrupt, args=(responder,))
        helper.start()
        try:
            with contextlib.ExitStack() as stack:
                if reader == "reader thread":
                    stack.enter_context(mb.subscribe("t.#"))
                assert ready.wait(SAFETY)
                with pytest.raises(KeyboardInterrupt):
                    mb.request("svc.w", b"q", timeout=SAFETY)
                mb.ping()
        finally:
            answered.set()
            helper.join(SAFETY)
            signal.signal(signal.SIGINT, previous)
        assert outcome == [False]


def test_the_withdrawal_goes_only_to_a_broker_that_announces_it() -> None:
    """An older broker would answer ``request.cancel`` with ``unknown_op``."""
    posted: list[Call[Any]] = []
    conn = Connection(post=posted.append)
    pending, _ = conn.begin(request_call("svc.w"), PostedCall)
    pending._give_up()
    assert posted == []
    assert not conn.pending
    conn.protocol.extensions = frozenset({"request.cancel"})
    pending, _ = conn.begin(request_call("svc.w"), PostedCall)
    pending._give_up()
    pending._give_up()  # withdrawn once
    assert [(c.op, c.fields) for c in posted] == [
        ("request.cancel", {"request": pending.request_id})
    ]
    # Calls the broker does not park are never withdrawn.
    other, _ = conn.begin(Call("ping", {}), PostedCall)
    other._give_up()
    assert len(posted) == 1
