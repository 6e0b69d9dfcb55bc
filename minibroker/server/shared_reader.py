"""One task that reads every idle plain-TCP connection, through one private epoll.

Why: each connection's reader task used to wait for its own socket with
``trio.lowlevel.wait_readable``. A request/reply crossing the broker then
cost, per socket hop, one Trio scheduler round for that task plus an
``epoll_ctl`` to re-arm Trio's one-shot registration of the socket. Here a
connection whose reader has nothing to do but wait for input *lends* its
socket to the server's :class:`SharedReader`: the socket joins a private,
level-triggered ``select.epoll`` (one ``epoll_ctl`` when lent, one when
taken back, none per hop), and one task waits on that epoll's descriptor.
On readiness it reads one chunk from each ready socket, dispatches each
chunk to its session exactly as the reader would, and writes the output of
the whole round once (``ReadyConnections.flush``).

The reader keeps every decision that is not "read and dispatch": the
shared loop hands the socket back (and wakes the reader) as soon as
anything is other than usual, i.e. after a chunk leaves the session over
its high-water mark, paused mid-chunk or blocked, closing, or holding a
partial frame the ``InputBudget`` does not grant at once; and on EOF, a
socket error or a dispatch that raised (the reader then raises it, as if
it had read it itself). So backpressure, the partial-frame budget, the
hello deadline, closing and lingering stay the reader's code, unchanged
(``minibroker/server/connection.py``).

Fairness: a round reads at most one chunk (``READ_CHUNK``) from each ready
socket, and the task waits on the epoll (a Trio checkpoint) between
rounds, so a connection that floods cannot starve another, nor any other
task.
"""

from __future__ import annotations

import contextlib
import logging
import select
import time
from collections.abc import Callable, Sized
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from minibroker.server.connection import Connection, ReadyConnections

log = logging.getLogger("minibroker.server")

#: Ready sockets taken per round at most (the rest stay ready for the next one).
MAX_EVENTS = 256
#: Rounds in a row whose wait found lent sockets ready at once, after which
#: Trio gets a turn (see ``IdleServing``).
MAX_BUSY_ROUNDS = 16
#: A wait longer than this slept: the lent sockets were not all that kept it short.
SLEPT_SECONDS = 100e-6


class SharedReader:
    """The private epoll of lent sockets and the task that serves it."""

    __slots__ = ("_closed", "_epoll", "_idle", "_lent", "_ready", "rounds")

    def __init__(self, ready: ReadyConnections) -> None:
        self._epoll = select.epoll()
        #: Lent sockets by descriptor.
        self._lent: dict[int, Connection] = {}
        self._ready = ready
        self._closed = False
        #: Serves rounds while Trio is idle, once running (None: not available).
        self._idle: IdleServing | None = None
        #: Rounds the task served (tests and the curious).
        self.rounds = 0

    def __len__(self) -> int:
        return len(self._lent)

    @property
    def idle_rounds(self) -> int:
        """Rounds served while Trio was idle (see ``IdleServing``)."""
        return 0 if self._idle is None else self._idle.rounds

    def lend(self, fd: int, connection: Connection) -> bool:
        """Read ``fd`` for ``connection`` until handed back (level-triggered).

        False once the shared loop has ended (the server is stopping): the
        reader then reads for itself.
        """
        if self._closed:
            return False
        self._epoll.register(fd, select.EPOLLIN)
        if self._idle is not None:
            self._idle.epoll.register(fd, select.EPOLLIN)
        self._lent[fd] = connection
        return True

    def take_back(self, fd: int) -> None:
        """Stop reading ``fd``. A descriptor already closed left the epolls by itself."""
        if self._lent.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
            if self._idle is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._idle.epoll.unregister(fd)

    def _close(self) -> None:
        self._closed = True
        for connection in list(self._lent.values()):
            connection.hand_back(None)
        self._lent.clear()
        self._epoll.close()
        if self._idle is not None:
            with contextlib.suppress(KeyError):  # removed already if it failed
                trio.lowlevel.remove_instrument(self._idle)
            self._idle.epoll.close()

    async def run(self) -> None:
        """Serve the lent sockets until cancelled."""
        epoll = self._epoll
        epoll_fd = epoll.fileno()
        wait_readable = trio.lowlevel.wait_readable
        self._idle = IdleServing.attach(self)
        if self._idle is not None:
            for fd in self._lent:  # lent before the loop started
                self._idle.epoll.register(fd, select.EPOLLIN)
        try:
            while True:
                await wait_readable(epoll_fd)
                self.rounds += 1
                self.serve(epoll.poll(0, MAX_EVENTS))
        finally:
            self._close()

    def serve(self, events: list[tuple[int, int]]) -> int:
        """One chunk from each ready lent socket, then the round's output; how many.

        Events of other descriptors are skipped. Holds no connection once
        it returns, so an ended one is freed at once.
        """
        lent = self._lent
        ready = self._ready
        served = 0
        ready.dispatching = True
        try:
            for fd, _ in events:
                connection = lent.get(fd)
                if connection is not None:
                    served += 1
                    if not connection.read_lent():
                        self.take_back(fd)
        finally:
            ready.flush()
        return served


def _noop() -> None:
    """Queued only to make Trio's I/O wait return at once."""


class IdleServing(trio.abc.Instrument):
    """While Trio has nothing to run, wait for the lent sockets *and* Trio's I/O at once.

    Trio calls ``before_io_wait(timeout)`` right before it blocks in its
    own ``epoll_wait`` with nothing runnable. Instead, this blocks (up to
    the same timeout) in one ``epoll_wait`` on an epoll of its own holding
    the lent sockets and Trio's epoll; when lent sockets are ready it serves
    them right there and waits again, so a request/reply hop through an
    idle broker costs no scheduler round, no task switch and no
    ``epoll_ctl``. It returns to Trio as soon as Trio has anything to do:
    I/O of its own, a task the round made runnable, or the timeout (a
    deadline); in the last two cases Trio's own wait is made to return at
    once (``run_sync_soon``, one write to Trio's wake-up socket).

    Trio's epoll reads ready whenever a lent socket does (it holds the
    shared task's epoll), so a round's wait cannot tell whether Trio has
    I/O of its own while lent sockets keep being ready. So after
    ``MAX_BUSY_ROUNDS`` rounds in a row whose wait returned at once (it
    did not sleep: lent sockets were ready all along), Trio gets its turn
    regardless, and a flood on lent sockets cannot starve its other
    connections, accepts or TLS. A request/reply's rounds each sleep
    first, so they never pay for that turn. (Two epolls, because an epoll
    may not hold one that holds it.)

    Needs two of Trio's internals, its epoll and its run queue, looked up
    once by :meth:`attach`; without them, or under a clock other than
    Trio's ``SystemClock`` (a ``MockClock``'s timeouts are not real
    seconds), nothing is attached and the shared task serves every round.
    """

    def __init__(
        self, shared: SharedReader, trio_epoll_fd: int, runq: Sized, waiting_for_idle: Sized
    ) -> None:
        self._shared = shared
        self._runq = runq
        self._waiting_for_idle = waiting_for_idle
        self.epoll = select.epoll()
        self.epoll.register(trio_epoll_fd, select.EPOLLIN)
        self._wake_trio: Callable[[], None] = _trio_waker()
        #: Rounds served while Trio was idle (tests and the curious).
        self.rounds = 0

    @classmethod
    def attach(cls, shared: SharedReader) -> IdleServing | None:
        internals = _trio_internals()
        if internals is None:
            return None
        instrument = cls(shared, *internals)
        trio.lowlevel.add_instrument(instrument)
        return instrument

    def before_io_wait(self, timeout: float) -> None:
        if timeout <= 0 or not self._shared._lent or self._waiting_for_idle:
            # Busy, nothing lent, or a task in ``wait_all_tasks_blocked``: its
            # cushion is the timeout, and Trio's wait must end with no event.
            return
        try:
            self._serve(timeout)
        except Exception:
            # A bug here must not stop the server: the shared task serves alone.
            log.exception("serving lent sockets while idle failed; no longer doing so")
            trio.lowlevel.remove_instrument(self)
            self._wake_trio()

    def _serve(self, timeout: float) -> None:
        poll = self.epoll.poll
        shared = self._shared
        runq = self._runq
        clock = time.monotonic
        now = clock()
        end = now + timeout
        busy = 0
        while now < end:
            events = poll(end - now, MAX_EVENTS)
            waited = clock() - now
            if not events:
                break  # a deadline is due
            if not shared.serve(events):
                return  # Trio's own I/O: its wait returns at once
            self.rounds += 1
            if runq or not shared._lent:
                break  # a task to run
            busy = 0 if waited > SLEPT_SECONDS else busy + 1
            if busy >= MAX_BUSY_ROUNDS:
                break  # a flood: Trio's turn (see above)
            now = clock()
        # Trio's wait would sleep its whole timeout again: make it return at once.
        self._wake_trio()


def _trio_waker() -> Callable[[], None]:
    token = trio.lowlevel.current_trio_token()
    return lambda: token.run_sync_soon(_noop)


def _trio_internals() -> tuple[int, Sized, Sized] | None:
    """Trio's epoll descriptor, run queue and idle waiters, or None where not as expected."""
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT, SystemClock

        runner = GLOBAL_RUN_CONTEXT.runner
        epoll = runner.io_manager._epoll
        runq = runner.runq
        waiting_for_idle = runner.waiting_for_idle
        clock = runner.clock
    except (ImportError, AttributeError):
        return None
    if type(clock) is not SystemClock or not isinstance(epoll, select.epoll):
        return None
    return epoll.fileno(), runq, waiting_for_idle
