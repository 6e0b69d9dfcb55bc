"""The child-process side of a benchmark role.

Each role (a producer, a consumer, a responder ...) runs in its own process,
started with the ``spawn`` method, and receives a :class:`RoleContext`. A role
function has the signature ``fn(ctx: RoleContext) -> dict`` and follows one
protocol:

1. connect and set up (declare queues, subscribe ...), then call ``ctx.ready()``;
2. a *driver* (producer, requester) then calls ``ctx.wait_go()`` and starts its
   clock; a *listener* (consumer, subscriber, responder) just goes on;
3. return a dict of plain values: the parent gathers the dicts of all roles and
   judges the run.

Times are ``time.perf_counter()`` values: on Linux that is CLOCK_MONOTONIC,
one clock for every process of the machine, so the parent may subtract a
producer's start from a consumer's last arrival.

Every loop in a role is bounded: by its message count, by ``ctx.deadline``
(the phase timeout) and, for receivers, by :meth:`RoleContext.stalled` (the
drivers are done and nothing arrived for ``idle_timeout`` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import trio

    from benchmarks.payload import Verifier

DEFAULT_IDLE_TIMEOUT = 5.0
POLL_INTERVAL = 0.1


class _EventLike(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = ...) -> bool: ...


class _ValueLike(Protocol):
    value: int


class _QueueLike(Protocol):
    def put(self, obj: Any) -> None: ...


class RoleTimeout(Exception):
    """A phase of a role ran past its deadline."""


class RoleContext:
    """What a role function gets: its parameters and its signals to the parent."""

    def __init__(
        self,
        name: str,
        params: dict[str, Any],
        ready_event: _EventLike,
        go_event: _EventLike,
        stop_event: _EventLike,
        progress_value: _ValueLike,
        deadline: float,
    ) -> None:
        self.name = name
        self.params = params
        self._ready = ready_event
        self._go = go_event
        self._stop = stop_event
        self._progress = progress_value
        self.deadline = deadline
        self.idle_timeout = float(params.get("idle_timeout", DEFAULT_IDLE_TIMEOUT))
        #: Process CPU and wall clock when set-up ended: the role's cost is counted from here.
        self.cpu_at_ready: float | None = None
        self.t_ready: float | None = None

    def ready(self) -> None:
        """Tell the parent that set-up is done (subscribed, declared, connected)."""
        self.cpu_at_ready, self.t_ready = time.process_time(), time.perf_counter()
        self._ready.set()

    def cpu_report(self) -> dict[str, float]:
        """CPU seconds this process used since ``ready()``, and when it finished (the
        parent divides by the time since *go*: near 1.0 means one core saturated, the
        client was the bottleneck)."""
        if self.cpu_at_ready is None:
            return {}
        return {"cpu_s": time.process_time() - self.cpu_at_ready, "t_done": time.perf_counter()}

    def wait_go(self) -> None:
        """Block until the parent starts the clock (drivers only)."""
        if not self._go.wait(timeout=max(0.0, self.time_left())):
            raise RoleTimeout("no start signal before the deadline")

    def stop_requested(self) -> bool:
        """True once every driver of the phase has finished (or the phase is aborted)."""
        return self._stop.is_set()

    def progress(self, count: int) -> None:
        """Publish a progress count for the parent's progress bar (cheap; no lock)."""
        self._progress.value = count

    def time_left(self) -> float:
        return self.deadline - time.perf_counter()

    def check_deadline(self) -> None:
        if time.perf_counter() > self.deadline:
            raise RoleTimeout("phase deadline passed")

    def stalled(self, verifier: Verifier) -> bool:
        """Should a receiver give up? Past the deadline, or drivers done and nothing new
        for ``idle_timeout`` seconds. A receiver that gives up reports what it got,
        and the parent reports the run as FAILED."""
        now = time.perf_counter()
        if now > self.deadline:
            return True
        if not self._stop.is_set():
            return False
        last = verifier.t_last
        if last is None:
            # Drivers are done and nothing ever arrived: allow one idle period from now.
            verifier.t_last = last = now
        return now - last > self.idle_timeout


def resolve(func_ref: str) -> Callable[[RoleContext], dict[str, Any]]:
    """``"package.module:function"`` -> the function."""
    module_name, _, attr = func_ref.partition(":")
    fn = getattr(importlib.import_module(module_name), attr)
    if not callable(fn):
        raise TypeError(f"{func_ref} is not callable")
    return fn  # type: ignore[no-any-return]


def child_main(
    name: str,
    func_ref: str,
    params: dict[str, Any],
    ready_event: _EventLike,
    go_event: _EventLike,
    stop_event: _EventLike,
    progress_value: _ValueLike,
    deadline: float,
    results: _QueueLike,
) -> None:
    """Entry point of a role process: run the role, send back ``(name, report)``."""
    ctx = RoleContext(name, params, ready_event, go_event, stop_event, progress_value, deadline)
    try:
        report = dict(resolve(func_ref)(ctx))
        report.setdefault("ok", True)
        for key, value in ctx.cpu_report().items():
            report.setdefault(key, value)
    except BaseException as exc:  # report everything, even KeyboardInterrupt
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" (at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
        error = f"{type(exc).__name__}: {exc}{where}"
        if isinstance(exc, TimeoutError | RoleTimeout) or type(exc).__name__ == "TooSlowError":
            error = f"ran out of time ({error}); progress {progress_value.value:,}"
        report = {"ok": False, "error": error}
    results.put((name, report))


# --- helpers for async roles -------------------------------------------------------


async def trio_wait_go(ctx: RoleContext) -> None:
    """``ctx.wait_go()`` without blocking the Trio loop (a client may have tasks)."""
    import trio

    await trio.to_thread.run_sync(ctx.wait_go)


async def trio_watchdog(ctx: RoleContext, verifier: Verifier, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` when the receiver has stalled (see :meth:`RoleContext.stalled`)."""
    import trio

    while not verifier.done:
        if ctx.stalled(verifier):
            scope.cancel()
            return
        await trio.sleep(POLL_INTERVAL)


async def asyncio_wait_go(ctx: RoleContext) -> None:
    await asyncio.to_thread(ctx.wait_go)


async def asyncio_wait_done(ctx: RoleContext, verifier: Verifier, done: asyncio.Event) -> None:
    """Wait until ``done`` is set or the receiver has stalled."""
    while not done.is_set() and not ctx.stalled(verifier):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), POLL_INTERVAL)


async def asyncio_wait_stop(ctx: RoleContext) -> None:
    """For responders: wait until the parent says the drivers are done."""
    while not ctx.stop_requested() and ctx.time_left() > 0:
        await asyncio.sleep(POLL_INTERVAL)


async def trio_wait_stop(ctx: RoleContext) -> None:
    import trio

    while not ctx.stop_requested() and ctx.time_left() > 0:
        await trio.sleep(POLL_INTERVAL)
