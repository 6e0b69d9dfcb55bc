"""One client connection on Trio: a reader task and a writer task around a session.

The reader takes whatever the socket has (up to 64 KiB), hands the whole
chunk to the session, and loops: decoding and dispatching a chunk never
yields, so a thousand pipelined frames cost one scheduler round, not a
thousand.

The shared read loop (plain TCP only): a reader with nothing to do but wait
for input *lends* its socket to the server's one ``SharedReader``
(``minibroker/server/shared_reader.py``), which reads and dispatches chunks
for every lent socket from one private epoll, and, while Trio has nothing
else to run, from inside Trio's own wait, so a request/reply hop costs no
scheduler round. The loop does only "read one chunk, dispatch it, write the
output"; whenever anything else is due (the session is over its high-water
mark, paused mid-chunk, blocked or closing, a partial frame the budget does
not grant at once, EOF, a socket error) it hands the socket back and wakes
the reader (``Connection.read_lent``, ``Connection._keeps_reading``), which
then does what is described below exactly as before. TLS and in-memory
streams keep reading in their own reader. The writer sleeps until the session has output, then sends
everything that accumulated in one ``send_all``. Routing into another
connection only appends to that connection's buffer and wakes its writer;
nothing awaits per message.

Backpressure: when the session's outbound buffer passes its high-water mark
(a client pipelining requests without reading the answers), the reader stops
reading until the writer has drained it, so memory per connection stays
bounded and TCP pushes back on the client. The session also stops
dispatching in the middle of a chunk at the mark (``input_paused``); the
reader answers the rest once the writer has drained, before reading more.

Direct writes (TCP only): at the end of each chunk, the reader writes the
output of every connection the chunk gave output to (its own answers, the
pushes and replies it routed elsewhere) straight into their sockets, with
non-blocking writes (``minibroker/direct_io.py``). That skips the writer's
wake-up and Trio's checkpoints, which were most of a request/reply's time
in the broker. What a socket does not take at once is left to that
connection's writer task.

Why the reader never *waits* to send: a reader blocked in ``send_all`` stops
reading, and a client that writes a large pipeline before reading any answer
would then deadlock against it as soon as both socket buffers fill. A
non-blocking write cannot block, so with the writer taking the rest the
server keeps reading up to the high-water mark, and such a client always
makes progress. (Measured and tried; see docs/internals.md.)

Partial frames: before reading more, the reader claims the whole of the
frame its decoder has started from the server-wide ``InputBudget``
(server/input_budget.py); while the budget is exhausted it reads nothing
(or, before hello, refuses the connection), so incomplete frames across all
connections cannot hold more memory than the budget allows.

Closing: whichever side ends the connection, the writer first sends what is
already answered (an error frame, a ``bye``, the answers to requests that
arrived before the client's EOF), bounded in time, then half-closes and
lingers briefly so that the last frame is not lost to a TCP reset. A closing
or half-closed connection sends no more pushes (``WireSession.eof_received``):
what keeps coming on a busy subscription must not hold it open.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import trio

from minibroker.direct_io import DirectSocket, direct_socket
from minibroker.errors import BrokerError, LimitExceeded
from minibroker.server.input_budget import InputBudget
from minibroker.server.shared_reader import SharedReader
from minibroker.server.wire_session import WireSession

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


class ReadyConnections:
    """Connections that got output while a reader was dispatching a chunk.

    Routing a message into another connection only marks it here; the
    reader that dispatched the chunk then writes every marked connection's
    output directly, in the order they were marked, before it reads again.
    One instance per server.
    """

    __slots__ = ("_queue", "dispatching")

    def __init__(self) -> None:
        self._queue: list[Connection] = []
        #: True while a reader dispatches a chunk: a flush is sure to follow,
        #: so output found meanwhile need not wake the writer task.
        self.dispatching = False

    def add(self, connection: Connection) -> None:
        self._queue.append(connection)

    def flush(self) -> None:
        self.dispatching = False
        queue = self._queue
        if not queue:
            return
        self._queue = []
        for connection in queue:
            try:
                connection.flush_directly()
            except Exception:
                # A bug encoding this connection's output must not stop the
                # others' flush, nor end the connection that was dispatching:
                # its own writer retries and, failing the same way, ends it.
                log.exception("flushing the output of %s", connection.peer_name)
                connection.wake_writer()


class Connection:
    """Runs one session over one stream until either side closes it."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        session: WireSession,
        *,
        after_input: Callable[[int], None],
        peer_name: str,
        hello_timeout: float | None = None,
        ready: ReadyConnections | None = None,
        input_budget: InputBudget | None = None,
        shared_reader: SharedReader | None = None,
    ) -> None:
        self.stream = stream
        self._hello_timeout = hello_timeout
        self.session = session
        self.peer_name = peer_name
        self._after_input = after_input
        self._wakeup = Wakeup()
        self._drained = Wakeup()
        self._ready = ready if ready is not None else ReadyConnections()
        #: The server-wide budget for partial frames (None: unbounded), and
        #: the bytes of it this connection holds.
        self._budget = input_budget
        self._claimed = 0
        #: Whether that claim was made before the handshake ended (it is then
        #: part of the budget's pre-auth share, and released from it).
        self._claimed_pre_auth = False
        #: Non-blocking access to a TCP socket (None for TLS and memory streams).
        self._direct: DirectSocket | None = direct_socket(stream)
        #: Where the reader lends its idle socket (TCP only; see shared_reader.py).
        self._shared = shared_reader if self._direct is not None else None
        #: The descriptor while lent (else -1), the event that ends the loan,
        #: and why it ended: None (look again), b"" (EOF) or what to raise.
        self._lent_fd = -1
        self._returned = trio.Event()
        self._loan_outcome: bytes | BaseException | None = None
        #: True while this connection waits in ``_ready``.
        self._queued = False
        #: True while the writer task is inside ``send_all``.
        self._writing = False
        #: The tail of a direct write the socket did not take; the writer sends it first.
        self._unsent: bytes | memoryview = b""
        session.wakeup = self._wake
        self.close_reason = "client closed the connection"
        #: Set once the reader has stopped (EOF or closing): the writer sends
        #: what is already answered, then ends the connection.
        self._input_done = False
        self._reader_done = trio.Event()
        #: Cancelled by ``abort``: the connection ends at once, nothing more sent.
        self._abort_scope = trio.CancelScope()
        #: Bytes received from and sent to the client (the dashboard shows them):
        #: one addition per chunk read or write, not per frame.
        self.bytes_in = 0
        self.bytes_out = 0

    def _wake(self) -> None:
        """The session has output: queue a direct write if a reader is about to
        flush, else wake the writer (a deadline or a group commit produced it)."""
        if self._direct is not None and self._ready.dispatching:
            if not self._queued:
                self._queued = True
                self._ready.add(self)
        else:
            self._wakeup.set()

    def wake_writer(self) -> None:
        """Leave this connection's pending output to its writer task."""
        self._wakeup.set()

    def flush_directly(self) -> None:
        """Write the session's output now, without blocking; the writer sends any rest.

        Skipped while the writer is sending (bytes would interleave) or holds
        an unsent tail (order), and once the connection is ending: the
        writer alone sends the last frames and closes.
        """
        self._queued = False
        direct = self._direct
        session = self.session
        if (
            direct is None
            or self._writing
            or self._unsent
            or self._input_done
            or session.closing is not None
        ):
            self._wakeup.set()
            return
        data = session.data_to_send()
        if not data:
            return
        try:
            sent = direct.try_write(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            sent = 0  # the writer meets the same error and ends the connection
        self.bytes_out += sent
        if sent < len(data) or session.has_output():
            # The socket is full, or more output waits (pushes past the
            # high-water mark): the writer task sends the rest.
            if sent < len(data):
                self._unsent = memoryview(data)[sent:]
            self._wakeup.set()

    async def run(self) -> None:
        """Serve until EOF, an error, a kick or cancellation; always cleans up."""
        session = self.session
        try:
            with self._abort_scope:
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
            session.connection_lost(trio.current_time())
            # The session's wakeup is our bound method, and we hold the
            # session: a cycle that would keep both (and everything they
            # hold) until the cycle collector's rare full collection.
            session.wakeup = _no_wakeup
            if self._budget is not None:
                self._budget.release(self._claimed, pre_auth=self._claimed_pre_auth)
                self._claimed = 0
            self._after_input(0)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.stream.aclose()

    def abort(self, reason: str) -> None:
        """End the connection at once: no goodbye, no linger (the server needs
        its slot for another client now; see ``BrokerServer._make_room``)."""
        self.close_reason = reason
        self._abort_scope.cancel()

    async def _hello_deadline(self, seconds: float) -> None:
        """Close a connection that has not completed hello in time.

        A client that connects and then sends nothing, or its hello one byte
        at a time (slowloris), would otherwise hold a connection slot and a
        decoder buffer forever without ever being authenticated.
        """
        await trio.sleep(seconds)
        session = self.session
        if not session.handshake_done and session.accepting_input():
            session.handshake_timed_out(seconds)

    async def _read_loop(self) -> None:
        session = self.session
        direct = self._direct
        receive_some = self.stream.receive_some
        budget = self._budget
        #: The last read took less than a chunk: the socket was empty then.
        drained = False
        discarded = 0
        try:
            while discarded < LINGER_DISCARD_BYTES:
                # (A tail a direct write left in ``_unsent`` does not count: it
                # is at most one buffer's worth, and stopping at once would
                # deadlock a client that writes a pipeline before reading.)
                while session.over_high_water and session.closing is None:
                    self._wakeup.set()
                    await self._drained.wait()
                while session.input_blocked and session.closing is None:
                    await self._drained.wait()  # the session wakes the writer when it ends
                if session.input_paused and session.closing is None:
                    # Frames of the last chunk wait behind the high-water mark:
                    # answer them before reading more.
                    self._dispatch(None)
                    continue
                if budget is not None and session.closing is None:
                    # The usual case costs no coroutine: the claim is unchanged
                    # (no partial frame, or the same one) or granted at once.
                    wanted = session.pending_input_bytes
                    if wanted != self._claimed and not self._claim(budget, wanted):
                        await self._claim_partial_frame(budget)
                if self._shared is not None and session.closing is None:
                    outcome = await self._lend(self._shared)
                    if outcome is None:
                        drained = False
                        continue  # handed back: look at the session again
                    if outcome == b"":
                        session.eof_received()
                        return
                    if isinstance(outcome, BaseException):
                        raise outcome
                    # Not lent (the shared loop has ended): read here.
                    self._shared = None
                if direct is None:
                    data = await receive_some(READ_CHUNK)
                else:
                    data = await direct.receive_some(READ_CHUNK, drained=drained)
                    drained = len(data) < READ_CHUNK
                if not data:
                    # The client's EOF: the session stops pushing, so the
                    # writer sends what is answered and closes promptly.
                    session.eof_received()
                    return
                self.bytes_in += len(data)
                if session.closing is not None:
                    # Closing: read and drop the peer's remaining input, so that
                    # our close is a clean EOF, not a reset that could destroy
                    # the error frame or goodbye before the peer reads it.
                    discarded += len(data)
                    continue
                self._dispatch(data)
        finally:
            self._reader_done.set()

    async def _lend(self, shared: SharedReader) -> bytes | BaseException | bool | None:
        """Lend the socket to the shared loop until it hands it back; why it did.

        False: the shared loop has ended and did not take it.
        """
        assert self._direct is not None
        fd = self._direct.fileno()
        self._returned = returned = trio.Event()
        self._loan_outcome = None
        if not shared.lend(fd, self):
            return False
        self._lent_fd = fd
        try:
            await returned.wait()
        finally:
            if self._lent_fd >= 0:
                # Cancelled while lent (the connection is ending).
                shared.take_back(self._lent_fd)
                self._lent_fd = -1
        # Not kept: an exception's traceback holds this connection (a cycle).
        outcome, self._loan_outcome = self._loan_outcome, None
        return outcome

    def hand_back(self, outcome: bytes | BaseException | None) -> None:
        """End the loan (the shared loop has taken the socket out of its epoll)."""
        self._lent_fd = -1
        self._loan_outcome = outcome
        self._returned.set()

    def read_lent(self) -> bool:
        """Read and dispatch one chunk for the shared loop; False: hand the socket back.

        Run in the shared loop's round, between ``ReadyConnections`` marking
        and flushing, so the output is written with the round's.
        """
        assert self._direct is not None
        if not self._keeps_reading():
            # Something else changed the session meanwhile (a kick, a deadline).
            self.hand_back(None)
            return False
        try:
            data = self._direct.read_now(READ_CHUNK)
            if data is None:
                return True
            if not data:
                self.hand_back(b"")
                return False
            self.bytes_in += len(data)
            self._dispatch_chunk(data)
        except Exception as exc:
            self.hand_back(exc)  # the reader raises it, as if it had read it
            return False
        if self._keeps_reading():
            return True
        self.hand_back(None)
        return False

    def _keeps_reading(self) -> bool:
        """Whether the reader would read again at once, with nothing to wait for.

        The same checks, in the same order, as the top of ``_read_loop``; a
        partial frame's claim is granted here when that needs no wait.
        """
        session = self.session
        if (
            session.closing is not None
            or session.over_high_water
            or session.input_blocked
            or session.input_paused
        ):
            return False
        budget = self._budget
        if budget is not None:
            wanted = session.pending_input_bytes
            if wanted != self._claimed and not self._claim(budget, wanted):
                return False
        return True

    def _claim(self, budget: InputBudget, wanted: int) -> bool:
        """Move this connection's claim to ``wanted`` bytes, from the budget's
        pre-auth share while the handshake is not done; False if refused.

        A claim made before the handshake and still held after it is given
        back to the share first, then claimed again as an authenticated one.
        """
        pre_auth = not self.session.handshake_done
        if pre_auth != self._claimed_pre_auth:
            budget.release(self._claimed, pre_auth=self._claimed_pre_auth)
            self._claimed = 0
            self._claimed_pre_auth = pre_auth
        if budget.claim(self._claimed, wanted, pre_auth=pre_auth):
            self._claimed = wanted
            return True
        return False

    async def _claim_partial_frame(self, budget: InputBudget) -> None:
        """Claim the partial frame the decoder holds; wait (or refuse) while there is no room.

        Called before every read, so a frame's claim is made as soon as its
        length prefix has arrived, and shrinks as soon as it is complete.
        """
        session = self.session
        while session.closing is None:
            wanted = session.pending_input_bytes
            if self._claim(budget, wanted):
                return
            # No claim while waiting or refused: waiters must never block each other.
            budget.release(self._claimed, pre_auth=self._claimed_pre_auth)
            self._claimed = 0
            if not session.handshake_done:
                budget.refused += 1
                session.discard_input()
                session.kick(
                    LimitExceeded(
                        f"the server holds its limit of incomplete frames ({budget.limit} "
                        f"bytes, {budget.pre_auth_limit} of them for connections that have "
                        "not completed their handshake); try again later"
                    )
                )
                return
            if budget.paused % 1000 == 0:
                log.warning(
                    "%s waits for room in the partial frame budget (%d of %d bytes held; "
                    "%d waits so far)",
                    self.peer_name,
                    budget.held,
                    budget.limit,
                    budget.paused + 1,
                )
            await budget.wait_for_room(session.buffered_input_bytes)

    def _dispatch(self, data: bytes | bytearray | None) -> None:
        """Dispatch a chunk (None: the frames left at the high-water mark), run
        due deadlines, then write what that produced, here and elsewhere."""
        self._ready.dispatching = True
        try:
            self._dispatch_chunk(data)
        finally:
            self._ready.flush()

    def _dispatch_chunk(self, data: bytes | bytearray | None) -> None:
        """Dispatch, leaving the flush to the caller (``_dispatch`` or the shared loop)."""
        session = self.session
        now = trio.current_time()
        if data is None:
            session.resume_input(now)
            self._after_input(0)
        else:
            session.receive_data(data, now)
            self._after_input(len(data))
        if session.has_output() or session.closing is not None:
            self._wake()

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
                data = self._unsent or session.data_to_send()
                self._unsent = b""
                if not data:
                    break
                self._writing = True
                try:
                    await stream.send_all(data)
                finally:
                    self._writing = False
                self.bytes_out += len(data)
            self._drained.set()
            if ending:
                if session.closing is not None:
                    await _finish(stream, session.closing, self._reader_done)
                scope.cancel()
                return


def _no_wakeup() -> None:
    """A closed session's wakeup: nothing left to wake."""


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
