"""Request/reply over TCP between every pair of clients: Trio, asyncio, blocking.

Each test gets the session's threaded TCP broker with a fresh namespace
(``minibroker_url``). Responders run in background threads with their own
event loop (or thread pool, for the blocking client); requesters run in the
test's thread. Every reply is checked to be the answer to its own request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any

import pytest
import trio

import minibroker
import minibroker.aio
from minibroker.client.rpc import (
    IncomingRequest,
    Reply,
    ServeHandle,
    SyncIncomingRequest,
)
from minibroker.errors import (
    NoResponders,
    ResponderError,
    ResponderGone,
    Timeout,
)
from minibroker.testing import ThreadedBroker

KINDS = ("trio", "asyncio", "blocking")
SUBJECT = "svc.echo"
N_REQUESTS = 60


class _Started:
    """A ``task_status`` for ``serve`` that signals another thread."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def started(self, value: object = None) -> None:
        self.event.set()


def _answer(kind: str, body: bytes) -> Reply:
    if body.startswith(b"fail"):
        raise ResponderError(f"{kind} refuses {body.decode()}")
    return Reply(b"re:" + body, {"by": kind})


@contextmanager
def responder(kind: str, url: str, subject: str = SUBJECT) -> Iterator[None]:
    """Run a ``serve`` responder of ``kind`` in a background thread."""
    started = _Started()
    stop: list[Callable[[], None]] = []
    errors: list[BaseException] = []

    async def handle(req: IncomingRequest) -> Reply:
        return _answer(kind, req.body)

    def run_trio() -> None:
        async def main() -> None:
            async with minibroker.connect(url) as mb:
                with trio.CancelScope() as scope:
                    token = trio.lowlevel.current_trio_token()
                    stop.append(lambda: trio.from_thread.run_sync(scope.cancel, trio_token=token))
                    await mb.serve(subject, handle, task_status=started)

        trio.run(main)

    def run_asyncio() -> None:
        async def main() -> None:
            async with minibroker.aio.connect(url) as mb:
                loop = asyncio.get_running_loop()
                task = asyncio.current_task()
                assert task is not None
                stop.append(lambda: loop.call_soon_threadsafe(task.cancel))
                await mb.serve(subject, handle, task_status=started)

        with suppress(asyncio.CancelledError):
            asyncio.run(main())

    def run_blocking() -> None:
        handle_ = ServeHandle()
        stop.append(handle_.stop)
        with minibroker.connect_sync(url) as mb:
            threading.Thread(
                target=lambda: handle_.ready.wait(30) and started.started(), daemon=True
            ).start()
            mb.serve(subject, lambda req: _answer(kind, req.body), workers=4, handle=handle_)

    target = {"trio": run_trio, "asyncio": run_asyncio, "blocking": run_blocking}[kind]

    def guarded() -> None:
        try:
            target()
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)
            started.event.set()

    thread = threading.Thread(target=guarded, name=f"{kind}-responder", daemon=True)
    thread.start()
    assert started.event.wait(30), f"the {kind} responder did not start"
    if errors:
        raise errors[0]
    try:
        yield
    finally:
        for fn in stop:
            fn()
        thread.join(30)
        assert not thread.is_alive(), f"the {kind} responder did not stop"
        if errors:
            raise errors[0]


def request_all(kind: str, url: str, bodies: list[bytes], subject: str = SUBJECT) -> list[Any]:
    """Send every body concurrently with a ``kind`` client; replies (or errors) in order."""
    if kind == "trio":

        async def trio_main() -> list[Any]:
            results: list[Any] = [None] * len(bodies)
            async with minibroker.connect(url) as mb:

                async def one(i: int) -> None:
                    try:
                        results[i] = await mb.request(subject, bodies[i])
                    except minibroker.BrokerError as exc:
                        results[i] = exc

                async with trio.open_nursery() as nursery:
                    for i in range(len(bodies)):
                        nursery.start_soon(one, i)
            return results

        return trio.run(trio_main)
    if kind == "asyncio":

        async def asyncio_main() -> list[Any]:
            async with minibroker.aio.connect(url) as mb:
                return await asyncio.gather(
                    *(mb.request(subject, body) for body in bodies), return_exceptions=True
                )

        return asyncio.run(asyncio_main())

    def one_blocking(mb: Any, body: bytes) -> Any:
        try:
            return mb.request(subject, body)
        except minibroker.BrokerError as exc:
            return exc

    with minibroker.connect_sync(url) as mb, ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda body: one_blocking(mb, body), bodies))


@pytest.mark.parametrize("responder_kind", KINDS)
@pytest.mark.parametrize("requester_kind", KINDS)
def test_every_client_pair_gets_exactly_its_own_replies(
    requester_kind: str, responder_kind: str, minibroker_url: str
) -> None:
    bodies = [b"%s-%d" % (requester_kind.encode(), i) for i in range(N_REQUESTS)]
    with responder(responder_kind, minibroker_url):
        replies = request_all(requester_kind, minibroker_url, bodies)
    assert replies == [Reply(b"re:" + body, {"by": responder_kind}) for body in bodies]


def test_mixed_responders_share_one_subject(minibroker_url: str) -> None:
    bodies = [b"mixed-%d" % i for i in range(90)]
    with (
        responder("trio", minibroker_url),
        responder("asyncio", minibroker_url),
        responder("blocking", minibroker_url),
    ):
        replies = request_all("blocking", minibroker_url, bodies)
    assert [r.body for r in replies] == [b"re:" + body for body in bodies]
    served_by = {r.headers["by"] for r in replies}
    assert served_by == set(KINDS), "round robin reaches every responder"


@pytest.mark.parametrize("responder_kind", KINDS)
@pytest.mark.parametrize("requester_kind", KINDS)
def test_responder_errors_reach_every_client(
    requester_kind: str, responder_kind: str, minibroker_url: str
) -> None:
    with responder(responder_kind, minibroker_url):
        (result,) = request_all(requester_kind, minibroker_url, [b"fail-1"])
    assert isinstance(result, ResponderError)
    assert result.message == f"{responder_kind} refuses fail-1"


@pytest.mark.parametrize("kind", KINDS)
def test_no_responders_with_every_client(kind: str, minibroker_url: str) -> None:
    (result,) = request_all(kind, minibroker_url, [b"x"], subject="svc.nobody")
    assert isinstance(result, NoResponders)


def test_blocking_request_times_out_on_the_brokers_clock(
    minibroker_server: ThreadedBroker, minibroker_url: str
) -> None:
    """The deadline is the broker's: the test clock jumps, the blocking call fails."""
    with (
        minibroker.connect_sync(minibroker_url) as requester,
        minibroker.connect_sync(minibroker_url) as silent,
        silent.respond("svc.silent") as reqs,
        ThreadPoolExecutor(1) as pool,
    ):
        pending = pool.submit(requester.request, "svc.silent", b"x", None, 30.0)
        incoming = reqs.get(timeout=30)
        assert incoming.body == b"x"
        minibroker_server.advance(31)
        with pytest.raises(Timeout) as info:
            pending.result(timeout=30)
        assert not isinstance(info.value, TimeoutError), "the broker's, not the client's"
        assert incoming.reply(b"late", confirm=True) is False
        assert requester.ping(b"ok") == b"ok"


def test_trio_responder_dying_fails_a_blocking_request(minibroker_url: str) -> None:
    got_request = threading.Event()
    release = threading.Event()

    def doomed() -> None:
        async def main() -> None:
            async with minibroker.connect(minibroker_url) as mb, mb.respond("svc.doomed") as reqs:
                ready.set()
                await reqs.__anext__()
                got_request.set()
                await trio.to_thread.run_sync(release.wait)
            # leaving closes the connection while holding the request

        trio.run(main)

    ready = threading.Event()
    thread = threading.Thread(target=doomed, daemon=True)
    thread.start()
    assert ready.wait(30)
    with minibroker.connect_sync(minibroker_url) as mb, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(mb.request, "svc.doomed", b"x", None, 60.0)
        assert got_request.wait(30)
        release.set()
        with pytest.raises(ResponderGone):
            pending.result(timeout=30)
    thread.join(30)


def test_blocking_serve_runs_up_to_workers_handlers_at_once(minibroker_url: str) -> None:
    workers = 3
    lock = threading.Lock()
    running = 0
    peak = 0
    gate = threading.Barrier(workers, timeout=30)

    def handler(req: SyncIncomingRequest) -> bytes:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait()  # passes only when `workers` handlers run at the same time
        with lock:
            running -= 1
        return req.body

    handle = ServeHandle()
    with minibroker.connect_sync(minibroker_url) as responder_client:
        thread = threading.Thread(
            target=responder_client.serve,
            args=("svc.pool", handler),
            kwargs={"workers": workers, "handle": handle},
            daemon=True,
        )
        thread.start()
        assert handle.ready.wait(30)
        bodies = [b"%d" % i for i in range(workers * 4)]
        replies = request_all("blocking", minibroker_url, bodies, subject="svc.pool")
        assert [r.body for r in replies] == bodies
        assert peak == workers
        handle.stop()
        thread.join(30)
        assert not thread.is_alive(), "stop() ends serve"
        (after,) = request_all("blocking", minibroker_url, [b"x"], subject="svc.pool")
        assert isinstance(after, NoResponders)


def test_blocking_respond_loop(minibroker_url: str) -> None:
    with (
        minibroker.connect_sync(minibroker_url) as mb,
        mb.respond("svc.loop") as requests,
        ThreadPoolExecutor(1) as pool,
    ):
        pending = pool.submit(request_all, "trio", minibroker_url, [b"a", b"b"], "svc.loop")
        for _ in range(2):
            req = requests.get(timeout=30)
            assert req.reply(req.body * 2, {"n": "2"}, confirm=True) is True
        assert sorted(r.body for r in pending.result(timeout=30)) == [b"aa", b"bb"]


def test_blocking_serve_handlers_run_on_workers_and_may_call_the_same_client(
    minibroker_url: str,
) -> None:
    # Handlers run on the serve's worker threads, never on the client's
    # reader thread (a blocking call there would wait for itself) nor on the
    # thread that called serve (Ctrl-C there must not interrupt a handler).
    ran_on: list[threading.Thread] = []

    def handler(req: SyncIncomingRequest) -> bytes:
        ran_on.append(threading.current_thread())
        return responder_client.ping(req.body)

    handle = ServeHandle()
    with minibroker.connect_sync(minibroker_url) as responder_client:
        thread = threading.Thread(
            target=responder_client.serve,
            args=("svc.inline", handler),
            kwargs={"workers": 1, "handle": handle},
            daemon=True,
        )
        thread.start()
        assert handle.ready.wait(30)
        bodies = [b"%d" % i for i in range(5)]
        replies = request_all("blocking", minibroker_url, bodies, subject="svc.inline")
        assert [r.body for r in replies] == bodies
        assert len(set(ran_on)) == 1 and len(ran_on) == len(bodies)
        assert ran_on[0] not in (thread, responder_client._reader)
        handle.stop()
        thread.join(30)
        assert not thread.is_alive()


CTRL_C_RESPONDER = """
import sys, threading
import minibroker
from minibroker import ServeHandle

def handler(req):
    print("running", flush=True)
    sys.stdin.readline()  # the test releases it after Ctrl-C
    return b"done:" + req.body

with minibroker.connect_sync(sys.argv[1]) as mb:
    handle = ServeHandle()
    threading.Thread(target=lambda: handle.ready.wait() and print("ready", flush=True)).start()
    try:
        mb.serve("svc.ctrlc", handler, workers=1, handle=handle)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


def test_ctrl_c_in_blocking_serve_lets_the_running_handler_answer(minibroker_url: str) -> None:
    # docs/request-reply.md: on Ctrl-C, handlers already running finish
    # before the responder is unregistered, so their replies still count.
    import signal
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_RESPONDER, minibroker_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    # Each line is read with a deadline, so a child that stalls fails the test
    # instead of hanging it (killing the child ends a read still waiting).
    lines = ThreadPoolExecutor(1)

    def next_line() -> str:
        assert child.stdout is not None
        return lines.submit(child.stdout.readline).result(30)

    try:
        assert next_line() == "ready\n"
        with ThreadPoolExecutor(1) as pool:
            asked = pool.submit(request_all, "blocking", minibroker_url, [b"x"], "svc.ctrlc")
            assert next_line() == "running\n"
            child.send_signal(signal.SIGINT)
            child.stdin.write("go\n")
            child.stdin.flush()
            (reply,) = asked.result(30)
        assert isinstance(reply, Reply) and reply.body == b"done:x"
        assert next_line() == "interrupted\n"
        assert child.wait(30) == 0
    finally:
        child.kill()
        child.wait()
        lines.shutdown(wait=False)


def test_blocking_serve_stopped_starts_no_buffered_request(minibroker_url: str) -> None:
    # One worker busy with a slow request, a second request waiting in the
    # buffer: stop() lets the running handler finish, never starts the
    # waiting one, and its requester learns at once that nobody will answer.
    started = threading.Event()
    release = threading.Event()
    handled: list[bytes] = []

    def handler(req: SyncIncomingRequest) -> bytes:
        handled.append(req.body)
        if req.body == b"slow":
            started.set()
            assert release.wait(30)
        return req.body

    handle = ServeHandle()
    with minibroker.connect_sync(minibroker_url) as responder_client, ThreadPoolExecutor(2) as pool:
        thread = threading.Thread(
            target=responder_client.serve,
            args=("svc.stop", handler),
            kwargs={"workers": 1, "handle": handle},
            daemon=True,
        )
        thread.start()
        assert handle.ready.wait(30)
        slow = pool.submit(request_all, "blocking", minibroker_url, [b"slow"], "svc.stop")
        assert started.wait(30)
        waiting = pool.submit(request_all, "blocking", minibroker_url, [b"waiting"], "svc.stop")
        buffered = handle._requests
        with buffered._cond:  # woken when the request lands in the responder's buffer
            assert buffered._cond.wait_for(lambda: buffered._items, 30)
        handle.stop()
        release.set()
        thread.join(30)
        assert not thread.is_alive()
        (gone,) = waiting.result(30)
        assert isinstance(gone, ResponderGone)
        (late,) = slow.result(30)
        assert isinstance(late, ResponderGone)  # stop() unregistered before it answered
        assert handled == [b"slow"]
