"""A connected pair of in-memory Trio streams: how in-process clients reach the broker.

An embedded broker's clients talk to it through the same bytes, frames and
session as TCP clients, so a test against ``open_broker()`` exercises what a
test against ``minibroker serve`` would; only the kernel is left out. Each
direction is a bounded byte buffer: a writer that gets ``HIGH_WATER`` bytes
ahead of its reader waits, exactly as a full socket buffer makes it wait, so
the broker's backpressure and slow-consumer handling behave the same.

(``trio.testing.memory_stream_pair`` does the same job, but it lives in a
testing package that imports pytest, which an application embedding the
broker should not have to load.)
"""

from __future__ import annotations

import trio

#: Bytes one direction may hold before ``send_all`` waits for the reader.
HIGH_WATER = 1024 * 1024


class _Pipe:
    """One direction: a byte buffer plus the events its two ends wait on."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        self.reader_closed = False
        self.readable = trio.Event()
        self.writable = trio.Event()
        self.writable.set()

    def wake_reader(self) -> None:
        self.readable.set()

    def wake_writer(self) -> None:
        self.writable.set()


class MemoryStream(trio.abc.HalfCloseableStream):
    """One end of an in-memory, full-duplex, bounded byte stream."""

    def __init__(self, incoming: _Pipe, outgoing: _Pipe) -> None:
        self._incoming = incoming
        self._outgoing = outgoing
        self._closed = False
        self._send_busy = False
        self._receive_busy = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._send_busy:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._send_busy = True
        try:
            await trio.lowlevel.checkpoint()
            pipe = self._outgoing
            self._check_can_send()
            pipe.buffer += data
            pipe.wake_reader()
            while len(pipe.buffer) > HIGH_WATER:
                pipe.writable = trio.Event()
                await pipe.writable.wait()
                self._check_can_send()
        finally:
            self._send_busy = False

    def _check_can_send(self) -> None:
        if self._closed or self._outgoing.eof:
            raise trio.ClosedResourceError("this stream is closed for sending")
        if self._outgoing.reader_closed:
            raise trio.BrokenResourceError("the other end of the stream is closed")

    async def wait_send_all_might_not_block(self) -> None:
        pipe = self._outgoing
        while len(pipe.buffer) > HIGH_WATER and not pipe.reader_closed:
            pipe.writable = trio.Event()
            await pipe.writable.wait()
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._receive_busy:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receive_busy = True
        try:
            pipe = self._incoming
            while not pipe.buffer and not pipe.eof:
                if self._closed:
                    raise trio.ClosedResourceError("this stream is closed")
                pipe.readable = trio.Event()
                await pipe.readable.wait()
            if self._closed:
                raise trio.ClosedResourceError("this stream is closed")
            await trio.lowlevel.checkpoint()
            size = len(pipe.buffer) if max_bytes is None else min(max_bytes, len(pipe.buffer))
            data = bytes(pipe.buffer[:size])
            del pipe.buffer[:size]
            pipe.wake_writer()
            return data
        finally:
            self._receive_busy = False

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()
        if not self._outgoing.eof:
            self._outgoing.eof = True
            self._outgoing.wake_reader()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._outgoing.eof = True
            self._outgoing.wake_reader()
            self._incoming.reader_closed = True
            self._incoming.buffer.clear()
            self._incoming.wake_writer()
            self._incoming.wake_reader()  # a receive in another task sees the close
        await trio.lowlevel.checkpoint()


def memory_stream_pair() -> tuple[MemoryStream, MemoryStream]:
    """Two connected ends: what one sends, the other receives."""
    a_to_b, b_to_a = _Pipe(), _Pipe()
    return MemoryStream(b_to_a, a_to_b), MemoryStream(a_to_b, b_to_a)
