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
import select
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from minibroker.server.connection import Connection, ReadyConnections

#: Ready sockets taken per round at most (the rest stay ready for the next one).
MAX_EVENTS = 256


class SharedReader:
    """The private epoll of lent sockets and the task that serves it."""

    __slots__ = ("_closed", "_epoll", "_lent", "_ready", "rounds")

    def __init__(self, ready: ReadyConnections) -> None:
        self._epoll = select.epoll()
        #: Lent sockets by descriptor.
        self._lent: dict[int, Connection] = {}
        self._ready = ready
        self._closed = False
        #: Rounds served (tests and the curious).
        self.rounds = 0

    def __len__(self) -> int:
        return len(self._lent)

    def lend(self, fd: int, connection: Connection) -> bool:
        """Read ``fd`` for ``connection`` until handed back (level-triggered).

        False once the shared loop has ended (the server is stopping): the
        reader then reads for itself.
        """
        if self._closed:
            return False
        self._epoll.register(fd, select.EPOLLIN)
        self._lent[fd] = connection
        return True

    def take_back(self, fd: int) -> None:
        """Stop reading ``fd``. A descriptor already closed left the epoll by itself."""
        if self._lent.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def close(self) -> None:
        self._closed = True
        for connection in list(self._lent.values()):
            connection.hand_back(None)
        self._lent.clear()
        self._epoll.close()

    async def run(self) -> None:
        """Serve the lent sockets until cancelled."""
        epoll_fd = self._epoll.fileno()
        wait_readable = trio.lowlevel.wait_readable
        try:
            while True:
                await wait_readable(epoll_fd)
                self._round()
        finally:
            self.close()

    def _round(self) -> None:
        """One chunk from each ready socket, then the round's output.

        A method of its own so that no connection stays referenced by the
        task's locals while it waits (an ended one is freed at once).
        """
        events = self._epoll.poll(0, MAX_EVENTS)
        if not events:
            return
        self.rounds += 1
        lent = self._lent
        ready = self._ready
        ready.dispatching = True
        try:
            for fd, _ in events:
                connection = lent.get(fd)
                if connection is not None and not connection.read_lent():
                    self.take_back(fd)
        finally:
            ready.flush()
