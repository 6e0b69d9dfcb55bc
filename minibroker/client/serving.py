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
dropped) is raised when the block ends, or at once under Trio. A caller
cancelled (asyncio, a Trio cancel scope) or interrupted (Ctrl-C) while
entering leaves nothing serving: the responder is unregistered before the
cancellation goes on, so a request meets ``NoResponders``, another
responder, or (if it reached this one) ``ResponderGone``, never a handler
nobody waits for.
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

    registered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(serve(task_status=_SetOnStart(registered)))
    try:
        await asyncio.wait((task, registered), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        # The caller was cancelled while serve registered: serve must not
        # outlive it, answering requests for a block that never ran (and,
        # once the connection goes, for nobody). Stop it and wait until it
        # has unregistered (requests it held fail with ``responder_gone``).
        await _stopped(task)
        raise
    if not registered.done():
        task.result()  # it failed before registering: raise its error here
        raise RuntimeError("serve returned before registering")  # pragma: no cover
    try:
        yield
    finally:
        error = await _stopped(task)
        if error is not None:
            raise error


async def _stopped(task: Any) -> BaseException | None:
    """Cancel the asyncio serve ``task`` and wait until it has left (unregistered);
    return its own error, if it failed. Only a cancellation of the caller ends
    the wait early, and it is raised, never swallowed: the task then still
    stops (and unregisters) on its own."""
    import asyncio

    task.cancel()
    await asyncio.wait((task,))  # raises only if the caller itself is cancelled
    if task.cancelled():
        return None
    error: BaseException | None = task.exception()
    return error


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
def serving_in_thread(serve: Callable[..., None], handle: ServeHandle) -> Iterator[ServeHandle]:
    """Run the blocking ``serve(handle=handle)`` on a thread; enter once ``handle.ready``
    is set (registered), and stop it (``handle.stop()``) when the block ends."""
    failure: list[BaseException] = []
    #: Set when serve has returned (an event, not ``join``: see ``SyncServing.serve``).
    finished = threading.Event()

    def run() -> None:
        try:
            serve(handle=handle)
        except BaseException as exc:
            failure.append(exc)
        finally:
            handle.ready.set()  # also wakes the caller when serve failed to register
            finished.set()

    thread = threading.Thread(target=run, name="minibroker-serving", daemon=True)
    try:
        thread.start()
        handle.ready.wait()
    except BaseException:
        # Ctrl-C while serve registered: it must not keep serving for a block
        # that never ran. Stopped now, it unregisters as soon as its
        # registration completes; wait for that (a second Ctrl-C stops waiting).
        handle.stop()
        if thread.ident is not None:  # it runs (the interrupt did not stop start())
            finished.wait()
        raise
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
    """A ``task_status`` for asyncio: ``started()`` completes a future."""

    def __init__(self, future: Any) -> None:
        self._future = future

    def started(self, value: object = None) -> None:
        if not self._future.done():
            self._future.set_result(None)
