"""Non-blocking socket I/O for Trio TCP streams, without Trio's per-call scheduling.

Why this exists: a request/reply through the broker crosses three processes
and four socket hops, and on these machines most of its latency was spent in
scheduling, not in work (docs/internals.md, "Latency"). Trio's
``SocketStream`` makes every call a full checkpoint: ``send_all`` yields to
the scheduler after the send has already succeeded, and ``receive_some``
yields again after data has already arrived. Each yield is a scheduler round
(4-10 µs here); two cancel scopes around a send cost another 10 µs.

:class:`DirectSocket` does the same system calls without those rounds:

* :meth:`DirectSocket.try_write` writes what the kernel accepts *now* and
  returns the count; it never blocks and never yields. Callers hand the
  remainder to a writer task that waits for the socket with ``send_all``, so
  nothing that matters changes: a peer that stops reading still blocks only
  that writer, never a reader (the deadlock docs/internals.md describes).
* :meth:`DirectSocket.receive_some` parks in ``wait_readable`` only when no
  data is there, and returns data that arrived while it was parked without
  a further yield. When data was already waiting it still passes a
  (cancel-shielded) checkpoint, so a peer that streams without pause cannot
  starve the other tasks.

Only plain TCP streams get this; TLS and in-memory streams keep their own
``send_all`` / ``receive_some`` (see :func:`direct_socket`).
"""

from __future__ import annotations

import errno
import os

import trio

#: errno values that mean the peer is gone (as Trio's SocketStream treats them).
_BROKEN = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN})


class DirectSocket:
    """Reads and writes on the file descriptor of one ``trio.SocketStream``.

    The stream keeps owning the socket: closing the stream (which notifies
    Trio's I/O manager) wakes a parked :meth:`receive_some` with
    ``trio.ClosedResourceError``, and after the close every call raises it.
    The caller must not mix these calls with the stream's own
    ``receive_some``, and must not call :meth:`try_write` while a
    ``send_all`` on the stream is in progress (bytes would interleave).
    """

    __slots__ = ("_fileno",)

    def __init__(self, stream: trio.SocketStream) -> None:
        # The stdlib socket under Trio's: its ``fileno`` is -1 once the stream
        # closed it, and asking it directly skips a Python call per use.
        self._fileno = stream.socket._sock.fileno  # type: ignore[attr-defined]

    def _fd(self) -> int:
        fd: int = self._fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the connection was closed")
        return fd

    def try_write(self, data: bytes | memoryview) -> int:
        """Write as much of ``data`` as the socket takes right now; return the count.

        Returns 0 when the socket buffer is full. Raises
        ``trio.BrokenResourceError`` if the peer is gone and
        ``trio.ClosedResourceError`` if the stream was closed.
        """
        try:
            return os.write(self._fd(), data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno in _BROKEN:
                raise trio.BrokenResourceError(f"the peer closed the connection: {exc}") from exc
            raise

    def fileno(self) -> int:
        """The socket's descriptor; ``trio.ClosedResourceError`` once the stream closed it."""
        return self._fd()

    def read_now(self, max_bytes: int) -> bytes | None:
        """What the socket holds now (b"" at EOF), or None if nothing; never blocks or yields."""
        try:
            return os.read(self._fd(), max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in _BROKEN:
                raise trio.BrokenResourceError(f"connection lost: {exc}") from exc
            raise

    async def receive_some(self, max_bytes: int, *, drained: bool = False) -> bytes:
        """Like ``SocketStream.receive_some``: at least one byte, or b"" at EOF.

        ``drained``: the caller's previous read returned less than it asked
        for, so the socket was empty then. It parks in ``wait_readable`` right
        away instead of first trying a read that would almost always fail: one
        system call less per wake-up on a request/reply path. (Readiness is
        level-triggered, so data that came meanwhile is seen at once.)
        """
        waited = False
        if drained:
            # Closed already: ClosedResourceError, as a read would raise. Waited
            # on by its number: Trio closing the stream wakes the wait all the
            # same. The wait is the checkpoint (a pending cancellation is
            # delivered as it blocks), so none is needed before it.
            await trio.lowlevel.wait_readable(self._fd())
            waited = True
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                data = os.read(self._fd(), max_bytes)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._fd())
                waited = True
                continue
            except OSError as exc:
                if exc.errno in _BROKEN:
                    raise trio.BrokenResourceError(f"connection lost: {exc}") from exc
                raise
            if not waited:
                # Data was already there: stay fair to the other tasks. The
                # checkpoint is shielded so a cancellation cannot lose ``data``.
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data


def direct_socket(stream: trio.abc.Stream) -> DirectSocket | None:
    """A :class:`DirectSocket` for a plain TCP ``stream``, or None for TLS and memory streams."""
    if type(stream) is trio.SocketStream:
        return DirectSocket(stream)
    return None
