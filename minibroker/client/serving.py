"""``serving``: a responder that runs in the background for one block, ready on entry.

``serve`` answers forever, so a test or a program that also sends requests
must run it beside its own code, and must not send the first request before
the responder is registered (it would meet ``NoResponders``). Trio has a
readiness signal for that (``await nursery.start(mb.serve, ...)``), asyncio
and threads have none; ``serving`` gives all three the same one:

    async with mb.serving("svc.echo", handler):          # Trio or asyncio
        reply = await mb.request("svc.echo", b"hi")       # registered already
    with mb.serving("svc.echo", handler) as handle: ...  # blocking client

Entering returns once the broker has registered the responder (an error
while registering, such as ``InvalidName``, is raised right there);
leaving stops serving. An error that ends serving early (the connection
dropped) is raised when the block ends, or at once under Trio.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

import sniffio


class ServeHandle:
    """Stops a blocking ``serve`` loop from another thread (``stop()``)."""

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._requests: Any = None
        #: Set once the responder is registered with the broker.
        self.ready = threading.Event()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        """Unregister the responder and end the loop; handlers already running finish.

        The broker fails requests this responder received but has not answered
        yet with ``responder_gone`` at once, so replies of handlers still
        running are dropped (they return False).
        """
        self._stopped.set()
        close = getattr(self._requests, "close", None)
        if close is not None:
            with suppress(Exception):
                close()


@asynccontextmanager
async def serving_in_background(serve: Callable[..., Awaitable[None]]) -> AsyncIterator[None]:
    """Run ``serve(task_status=...)`` beside the block; enter once it calls
    ``task_status.started()``; cancel it when the block ends."""
    if sniffio.current_async_library() == "trio":
        async with _trio_serving(serve):
            yield
        return
    import asyncio

    registered = asyncio.Event()
    task = asyncio.ensure_future(serve(task_status=_SetOnStart(registered)))
    waiting = asyncio.ensure_future(registered.wait())
    try:
        await asyncio.wait((task, waiting), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if not registered.is_set():
        task.result()  # it failed before registering: raise its error here
        raise RuntimeError("serve returned before registering")  # pragma: no cover
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


@asynccontextmanager
async def _trio_serving(serve: Callable[..., Awaitable[None]]) -> AsyncIterator[None]:
    import trio

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # One error (the block's own, or serve's): give it back as itself,
        # not wrapped in the nursery's group, so ``except NotFound`` works.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


@contextmanager
def serving_in_thread(
    serve: Callable[[ServeHandle], None], handle: ServeHandle
) -> Iterator[ServeHandle]:
    """Run the blocking ``serve(handle)`` on a thread; enter once ``handle.ready``
    is set (registered), and stop it (``handle.stop()``) when the block ends."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            serve(handle)
        except BaseException as exc:
            failure.append(exc)
        finally:
            handle.ready.set()  # also wakes the caller when serve failed to register

    thread = threading.Thread(target=run, name="minibroker-serving", daemon=True)
    thread.start()
    handle.ready.wait()
    if failure:
        thread.join()
        raise failure[0]
    try:
        yield handle
    finally:
        handle.stop()
        thread.join()
    if failure:
        raise failure[0]


class _SetOnStart:
    """A ``task_status`` for asyncio: ``started()`` sets an event."""

    def __init__(self, event: Any) -> None:
        self._event = event

    def started(self, value: object = None) -> None:
        self._event.set()
