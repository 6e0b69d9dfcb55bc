"""A responder never outlives the code that gave up on it (cancelled, Ctrl-C).

``serving`` registers a responder and runs it in the background; if the
caller is cancelled (asyncio, a Trio cancel scope) or interrupted (Ctrl-C on
the blocking client) while that registration is under way, nothing may keep
serving: the asyncio client used to leave its serve task running, answering
requests for a block that never ran. Each test stops the caller at one point
of the registration (the ``respond`` frame queued, its answer read, serve
told it is registered) and then checks that a request meets
``NoResponders``, and that no handler ran.

The same holds when a responder is left while the client waits to write
(asyncio, a paused transport), and when a blocking ``serve`` is interrupted
a second time while it waits for its running handlers: the unsubscribe is
still sent, so requesters get ``responder_gone`` at once, not a timeout.
"""

from __future__ import annotations

import asyncio
import linecache
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import pytest
import trio
from client_facades import SAFETY

import minibroker
import minibroker.aio
from minibroker import IncomingRequest, ServeHandle, SyncIncomingRequest
from minibroker.client import serving as serving_module
from minibroker.errors import ConnectionClosed, NoResponders, ResponderGone

#: Where the caller is stopped while ``serving`` registers its responder:
#: ``queued``: the ``respond`` frame is queued, not sent yet; ``registered``:
#: its answer was read, serve has not resumed; ``started``: serve said it is
#: registered, the caller has not resumed (asyncio only: under Trio, starting
#: hands serve to the caller's nursery in the same step).
POINTS = ["queued", "registered", "started"]


def stop_registration_at(
    mb: Any, point: str, stop: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Call ``stop()`` (cancel or interrupt the caller) when the responder
    registration of ``mb`` reaches ``point``."""
    if point == "started":
        started = serving_module._SetOnStart.started

        def started_then_stop(self: Any, value: object = None) -> None:
            started(self, value)
            stop()

        monkeypatch.setattr(serving_module._SetOnStart, "started", started_then_stop)
        return
    begin = mb._begin

    def begin_then_stop(call: Any, *args: Any, **kwargs: Any) -> Any:
        if call.op != "respond":
            return begin(call, *args, **kwargs)
        if point == "queued":
            pending = begin(call, *args, **kwargs)
            stop()
            return pending
        register = kwargs.pop("on_reply")

        def registered(result: Any) -> None:
            register(result)
            stop()

        return begin(call, *args, on_reply=registered, **kwargs)

    monkeypatch.setattr(mb, "_begin", begin_then_stop)


@pytest.mark.parametrize("point", POINTS)
def test_asyncio_serving_cancelled_while_registering_leaves_nothing_serving(
    minibroker_url: str, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the serve task kept running (and answering) after its
    caller was cancelled at any of these points."""
    handled: list[bytes] = []

    async def handler(req: IncomingRequest) -> bytes:
        handled.append(req.body)
        return b"answered by nobody's responder"

    async def main() -> None:
        async with minibroker.aio.connect(minibroker_url) as mb:
            entered = asyncio.Event()

            async def enter() -> None:
                async with mb.serving("svc.x", handler):
                    entered.set()
                    await asyncio.Event().wait()

            caller = asyncio.ensure_future(enter())
            stop_registration_at(mb, point, caller.cancel, monkeypatch)
            with pytest.raises(asyncio.CancelledError):
                await caller
            assert not entered.is_set()
            # Nothing runs on in the background, and the broker has no responder.
            assert asyncio.all_tasks() == {asyncio.current_task()}
            await mb.ping()  # the respond's answer is read: any unsubscribe is queued
            with pytest.raises(NoResponders):
                await mb.request("svc.x", b"hi", timeout=SAFETY)
            assert handled == []

    asyncio.run(main())


async def handler_never_called(req: IncomingRequest) -> bytes:
    raise AssertionError("no request should reach this handler")


def test_asyncio_serving_cancelled_while_leaving_is_not_swallowed(minibroker_url: str) -> None:
    """Regression: a cancellation of the caller while the block's exit waited
    for serve to stop was swallowed (``suppress(CancelledError)``), so the
    caller carried on as if never cancelled."""

    async def main() -> None:
        async with minibroker.aio.connect(minibroker_url) as mb:
            leaving = asyncio.Event()
            after_the_block: list[str] = []

            async def serve_briefly() -> None:
                async with mb.serving("svc.x", handler_never_called):
                    leaving.set()
                after_the_block.append("carried on")

            caller = asyncio.ensure_future(serve_briefly())
            await leaving.wait()  # the caller now waits for serve to unregister
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            assert after_the_block == []
            # Serve still stops and unregisters on its own.
            serve_tasks = asyncio.all_tasks() - {asyncio.current_task()}
            if serve_tasks:
                await asyncio.wait(serve_tasks)
            with pytest.raises(NoResponders):
                await mb.request("svc.x", b"hi", timeout=SAFETY)

    asyncio.run(main())


@pytest.mark.parametrize("point", ["queued", "registered"])
async def test_trio_serving_cancelled_while_registering_leaves_nothing_serving(
    minibroker_client: minibroker.Client, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under Trio the cancelled registration is abandoned (``queued``), or
    serve is already in the caller's nursery and the block, entered, is
    cancelled at its first checkpoint (``registered``): either way serve
    stops with the scope."""
    mb = minibroker_client
    with trio.CancelScope() as scope:
        stop_registration_at(mb, point, scope.cancel, monkeypatch)
        async with mb.serving("svc.x", handler_never_called):
            await trio.sleep_forever()
    assert scope.cancelled_caught
    await mb.ping()
    with pytest.raises(NoResponders):
        await mb.request("svc.x", b"hi", timeout=SAFETY)


def interrupt_main_thread() -> None:
    """Ctrl-C, as the terminal sends it: SIGINT to the main thread, which
    raises KeyboardInterrupt there, interrupting whatever it waits on."""
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


def serving_threads_left() -> list[threading.Thread]:
    """``serving``'s background threads still alive (one that is just
    returning is given the time to)."""
    left = [t for t in threading.enumerate() if t.name == "minibroker-serving"]
    for thread in left:
        thread.join(SAFETY)
    return [t for t in left if t.is_alive()]


@pytest.mark.skipif(sys.platform == "win32", reason="pthread_kill")
@pytest.mark.parametrize("point", ["queued", "registered"])
def test_blocking_serving_interrupted_while_registering_leaves_nothing_serving(
    minibroker_url: str, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: Ctrl-C while ``serving`` waited for the registration left
    its serve thread running, registered and answering."""
    assert threading.current_thread() is threading.main_thread()
    handled: list[bytes] = []

    def handler(req: SyncIncomingRequest) -> bytes:
        handled.append(req.body)
        return b"answered by nobody's responder"

    with minibroker.connect_sync(minibroker_url) as mb:
        stop_registration_at(mb, point, interrupt_main_thread, monkeypatch)
        with pytest.raises(KeyboardInterrupt), mb.serving("svc.x", handler):
            pytest.fail("entered")
        assert serving_threads_left() == []
        mb.ping()
        with pytest.raises(NoResponders):
            mb.request("svc.x", b"hi", timeout=SAFETY)
        assert handled == []


def test_blocking_serving_closed_while_registering_raises_and_leaves_no_thread(
    minibroker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client closed (from another thread) while ``serving`` registers:
    entering raises ``ConnectionClosed`` (or, if the registration's answer
    was read before the close, the block runs and serving ends with the
    client). Either way no serve thread is left, and a request elsewhere
    meets no responder (or, if it reached this one before the broker saw
    the close, ``responder_gone``)."""

    def handler(req: SyncIncomingRequest) -> bytes:
        raise AssertionError("no request should reach this handler")

    with (
        minibroker.connect_sync(minibroker_url) as mb,
        minibroker.connect_sync(minibroker_url) as other,
    ):
        stop_registration_at(mb, "queued", mb.close, monkeypatch)
        with suppress(ConnectionClosed), mb.serving("svc.x", handler):
            assert mb.closed
        assert serving_threads_left() == []
        with pytest.raises((NoResponders, ResponderGone)):
            other.request("svc.x", b"hi", timeout=SAFETY)


def test_asyncio_responder_left_while_writing_is_paused_still_unregisters(
    minibroker_url: str,
) -> None:
    """Regression: leaving ``respond`` while the transport was paused
    (its buffer past the high-water mark) waited to drain before queueing the
    unsubscribe; cancelled meanwhile, it never sent it. The broker kept
    routing requests to a responder whose pushes the client dropped: they
    waited for their deadline instead of failing at once."""

    async def main() -> None:
        async with minibroker.aio.connect(minibroker_url) as mb:
            assert mb._transport is not None
            wire = mb._transport.get_protocol()
            leaving = asyncio.Event()

            async def respond_then_leave() -> None:
                async with mb.respond("svc.x"):
                    wire.pause_writing()  # what asyncio calls past the high-water mark
                    leaving.set()

            task = asyncio.ensure_future(respond_then_leave())
            await leaving.wait()  # the task now waits inside the subscription's aclose
            task.cancel()
            await asyncio.wait((task,))
            wire.resume_writing()
            await mb.ping()
            with pytest.raises(NoResponders):
                await mb.request("svc.x", b"hi", timeout=2.0)

    asyncio.run(main())


def blocks_in_serve(thread_id: int, line: str) -> bool:
    """True if thread ``thread_id`` is blocked on a lock in a blocking
    ``serve``, at the line of rpc.py starting with ``line``."""
    frame = sys._current_frames().get(thread_id)
    if frame is None or frame.f_code.co_name != "wait":  # threading.Condition.wait
        return False
    if not _line(frame).startswith("waiter.acquire()"):
        return False
    while frame is not None:
        code = frame.f_code
        if code.co_name == "serve" and code.co_filename.endswith("rpc.py"):
            return _line(frame).startswith(line)
        frame = frame.f_back
    return False


def _line(frame: Any) -> str:
    return linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()


def interrupt_once_blocked(thread_id: int, line: str) -> None:
    """Ctrl-C the main thread once it waits at ``line`` of ``serve``.

    A signal that arrives just before the thread blocks on a lock is only
    handled once the lock is released (CPython runs handlers on EINTR), and
    this thread gets the GIL exactly when that one gives it up to block: so
    the thread must be seen blocked twice, a poll apart (a state to see,
    not a time to guess), before the signal goes.
    """
    seen = 0
    for _ in range(int(SAFETY * 1000)):
        seen = seen + 1 if blocks_in_serve(thread_id, line) else 0
        if seen == 2:
            break
        threading.Event().wait(0.001)
    interrupt_main_thread()


@pytest.mark.skipif(sys.platform == "win32", reason="pthread_kill")
def test_blocking_serve_interrupted_twice_while_a_handler_runs_unregisters(
    minibroker_url: str,
) -> None:
    """Regression: the first Ctrl-C makes ``serve`` wait for its running
    handlers; a second one cut that wait short and skipped the unsubscribe
    (the subscription, ended locally, sent none on close): the responder
    stayed registered, and the requests routed to it waited for their deadline."""
    main = threading.main_thread().ident
    assert main == threading.get_ident()
    handling = threading.Event()
    release = threading.Event()
    outcome: list[object] = []

    def handler(req: SyncIncomingRequest) -> bytes:
        handling.set()
        release.wait(SAFETY)
        return b"too late"

    with (
        minibroker.connect_sync(minibroker_url) as mb,
        minibroker.connect_sync(minibroker_url) as other,
    ):
        handle = ServeHandle()

        def request_then_interrupt_twice() -> None:
            handle.ready.wait(SAFETY)
            asking = threading.Thread(target=ask, args=(b"first",))
            asking.start()
            assert handling.wait(SAFETY)
            # Serve stops taking requests and waits for the handler ...
            interrupt_once_blocked(main or 0, "done.wait()")
            # ... and stops waiting.
            interrupt_once_blocked(main or 0, "running.wait_for(")
            asking.join(SAFETY)

        def ask(body: bytes) -> None:
            try:
                outcome.append(other.request("svc.x", body, timeout=SAFETY))
            except Exception as exc:
                outcome.append(exc)

        helper = threading.Thread(target=request_then_interrupt_twice)
        helper.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                mb.serve("svc.x", handler, workers=1, handle=handle)
            mb.ping()
            # The responder is gone: a new request is refused at once, and the
            # one its handler still holds failed without waiting for its deadline.
            with pytest.raises(NoResponders):
                other.request("svc.x", b"second", timeout=2.0)
            helper.join(SAFETY)
            assert len(outcome) == 1 and isinstance(outcome[0], ResponderGone)
        finally:
            release.set()
            helper.join(SAFETY)
