"""One client connection on Trio: a reader task and a writer task around a Session.

The reader takes whatever the socket has (up to 64 KiB), hands the whole
chunk to the session, and loops: decoding and dispatching a chunk never
yields, so a thousand pipelined frames cost one scheduler round, not a
thousand. The writer sleeps until the session has output, then sends
everything that accumulated in one ``send_all``. Routing into another
connection only appends to that connection's buffer and wakes its writer;
nothing awaits per message.

Backpressure: when the session's outbound buffer passes its high-water mark
(a client pipelining requests without reading the answers), the reader stops
reading until the writer has drained it, so memory per connection stays
bounded and TCP pushes back on the client. The session also stops
dispatching in the middle of a chunk at the mark (``input_paused``); the
reader answers the rest once the writer has drained, before reading more.

Why the reader never sends itself (which would save a task switch, a few
microseconds per round trip): a reader blocked in ``send_all`` stops
reading, and a client that writes a large pipeline before reading any answer
would then deadlock against it as soon as both socket buffers fill. With a
separate writer the server keeps reading up to the high-water mark, so such
a client always makes progress. (Measured and tried; see docs/internals.md.)

Closing: whichever side ends the connection, the writer first sends what is
already answered (an error frame, a ``bye``, the answers to requests that
arrived before the client's EOF), bounded in time, then half-closes and
lingers briefly so that the last frame is not lost to a TCP reset.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import trio

from minibroker.core.errors import BrokerError, Timeout
from minibroker.protocol.session import Session

log = logging.getLogger("minibroker.server")

READ_CHUNK = 65536
#: Seconds a closing connection gets to deliver its last frames (an error, a
#: ``bye``, answers to requests sent before EOF) to a peer that may not read.
CLOSE_FLUSH_SECONDS = 5.0
#: Bytes read and discarded after a close, so the peer sees the goodbye
#: instead of a reset (closing a socket with unread input sends RST).
LINGER_DISCARD_BYTES = 1024 * 1024
#: Seconds to wait for the peer's EOF after our goodbye before closing anyway.
LINGER_SECONDS = 1.0


class Wakeup:
    """A re-armable Event: ``set`` is cheap when already set; ``wait`` re-arms."""

    __slots__ = ("_event", "_pending")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._pending = False

    def set(self) -> None:
        if not self._pending:
            self._pending = True
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()
        self._pending = False


class Connection:
    """Runs one session over one stream until either side closes it."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        session: Session,
        *,
        after_input: Callable[[], None],
        peer_name: str,
        hello_timeout: float | None = None,
    ) -> None:
        self.stream = stream
        self._hello_timeout = hello_timeout
        self.session = session
        self.peer_name = peer_name
        self._after_input = after_input
        self._wakeup = Wakeup()
        self._drained = Wakeup()
        session.wakeup = self._wakeup.set
        self.close_reason = "client closed the connection"
        #: Set once the reader has stopped (EOF or closing): the writer sends
        #: what is already answered, then ends the connection.
        self._input_done = False
        self._reader_done = trio.Event()

    async def run(self) -> None:
        """Serve until EOF, an error, a kick or cancellation; always cleans up."""
        session = self.session
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop, nursery.cancel_scope)
                if self._hello_timeout is not None:
                    nursery.start_soon(self._hello_deadline, self._hello_timeout)
                await self._read_loop()
                # EOF, or the connection is closing and the peer's input is
                # drained: the writer flushes what is already answered (the
                # error or goodbye included), then cancels the scope.
                self._input_done = True
                self._wakeup.set()
        except* (trio.BrokenResourceError, trio.ClosedResourceError) as group:
            # The nursery wraps task errors in an ExceptionGroup; a peer that
            # vanished ends this connection only, never the server.
            if session.closing is None:
                exc = group.exceptions[0]
                self.close_reason = f"connection lost: {exc or type(exc).__name__}"
        finally:
            if session.closing is not None:
                self.close_reason = f"{session.closing.code}: {session.closing.message}"
            session.now = trio.current_time()
            session.connection_lost()
            self._after_input()
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.stream.aclose()

    async def _hello_deadline(self, seconds: float) -> None:
        """Close a connection that has not completed hello in time.

        A client that connects and then sends nothing, or its hello one byte
        at a time (slowloris), would otherwise hold a connection slot and a
        decoder buffer forever without ever being authenticated.
        """
        await trio.sleep(seconds)
        session = self.session
        if session.namespace is None and session.accepting_input():
            session.kick(Timeout(f"no hello within {seconds:g} seconds; closing the connection"))

    async def _read_loop(self) -> None:
        session = self.session
        stream = self.stream
        discarded = 0
        try:
            while discarded < LINGER_DISCARD_BYTES:
                while session.over_high_water and session.closing is None:
                    self._wakeup.set()
                    await self._drained.wait()
                if session.input_paused and session.closing is None:
                    # Frames of the last chunk wait behind the high-water mark:
                    # answer them before reading more.
                    session.now = trio.current_time()
                    session.resume_input()
                    self._after_input()
                    if session.has_output() or session.closing is not None:
                        self._wakeup.set()
                    continue
                data = await stream.receive_some(READ_CHUNK)
                if not data:
                    return
                if session.closing is not None:
                    # Closing: read and drop the peer's remaining input, so that
                    # our close is a clean EOF, not a reset that could destroy
                    # the error frame or goodbye before the peer reads it.
                    discarded += len(data)
                    continue
                session.now = trio.current_time()
                session.receive_data(data)
                self._after_input()
                if session.has_output() or session.closing is not None:
                    self._wakeup.set()
        finally:
            self._reader_done.set()

    async def _write_loop(self, scope: trio.CancelScope) -> None:
        session = self.session
        stream = self.stream
        while True:
            await self._wakeup.wait()
            ending = session.closing is not None or self._input_done
            if ending:
                # A peer that stops reading must not keep a closing connection alive.
                scope.deadline = min(scope.deadline, trio.current_time() + CLOSE_FLUSH_SECONDS)
            while True:
                data = session.data_to_send()
                if not data:
                    break
                await stream.send_all(data)
            self._drained.set()
            if ending:
                if session.closing is not None:
                    await _finish(stream, session.closing, self._reader_done)
                scope.cancel()
                return


async def _finish(stream: trio.abc.Stream, reason: BrokerError, reader_done: trio.Event) -> None:
    """Half-close politely, then linger briefly so the goodbye is read.

    Closing a socket whose receive buffer still holds unread bytes (the rest
    of an oversized frame, say) makes the kernel send RST, and the peer may
    lose the error frame before reading it. So after our EOF the reader keeps
    draining the peer's input (bounded in bytes) and we wait, bounded in time,
    for the peer to close its side too.
    """
    log.debug("closing connection: %s", reason)
    send_eof = getattr(stream, "send_eof", None)
    with trio.move_on_after(LINGER_SECONDS):
        if send_eof is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await send_eof()
        await reader_done.wait()
