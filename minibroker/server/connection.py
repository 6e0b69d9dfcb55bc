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
bounded and TCP pushes back on the client.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import trio

from minibroker.core.errors import BrokerError
from minibroker.protocol.session import Session

log = logging.getLogger("minibroker.server")

READ_CHUNK = 65536


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
    ) -> None:
        self.stream = stream
        self.session = session
        self.peer_name = peer_name
        self._after_input = after_input
        self._wakeup = Wakeup()
        self._drained = Wakeup()
        session.wakeup = self._wakeup.set
        self.close_reason = "client closed the connection"

    async def run(self) -> None:
        """Serve until EOF, an error, a kick or cancellation; always cleans up."""
        session = self.session
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop, nursery.cancel_scope)
                await self._read_loop()
                if session.closing is None:
                    nursery.cancel_scope.cancel()
                # else: the writer flushes the goodbye, then cancels the scope.
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.close_reason = f"connection lost: {exc or type(exc).__name__}"
        finally:
            session.now = trio.current_time()
            session.connection_lost()
            self._after_input()
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.stream.aclose()

    async def _read_loop(self) -> None:
        session = self.session
        stream = self.stream
        while session.closing is None:
            while session.over_high_water and session.closing is None:
                self._wakeup.set()
                await self._drained.wait()
            data = await stream.receive_some(READ_CHUNK)
            if not data:
                return
            session.now = trio.current_time()
            session.receive_data(data)
            self._after_input()
            if session.has_output():
                self._wakeup.set()
        if session.closing is not None:
            self.close_reason = f"{session.closing.code}: {session.closing.message}"

    async def _write_loop(self, scope: trio.CancelScope) -> None:
        session = self.session
        stream = self.stream
        while True:
            await self._wakeup.wait()
            while True:
                data = session.data_to_send()
                if not data:
                    break
                await stream.send_all(data)
            self._drained.set()
            if session.closing is not None:
                await _finish(stream, session.closing)
                scope.cancel()
                return


async def _finish(stream: trio.abc.Stream, reason: BrokerError) -> None:
    """Half-close politely where the stream supports it, so the goodbye is read."""
    log.debug("closing connection: %s", reason)
    send_eof = getattr(stream, "send_eof", None)
    if send_eof is not None:
        with trio.move_on_after(1):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await send_eof()
