"""The readers of a log that wait: parked long-poll reads and tail subscriptions.

Both hold a position in a :class:`~minibroker.core.logs.Log`, never records.
A :class:`ReadWaiter` is answered once, when the high watermark passes its
offset or its deadline comes; a :class:`LogTail` is a push source that the
connection drains chunk by chunk, reading each one from the store only when
there is room to send it (see :mod:`minibroker.core.logs`).

A woken waiter has no such room to wait for: its answer is written at once.
So it first asks its connection (``Requester.takes_reply``) whether the
client is reading; if not, it answers as at its deadline (an empty batch at
its offset) without reading records. Otherwise a client that parks many
reads and stops reading would make one append cost the broker one copy of
the records per parked read (300 reads and a 1 MiB append held 300 MiB).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from minibroker.core.peer import Peer, Requester
from minibroker.core.timers import Timer
from minibroker.errors import BrokerError, OffsetOutOfRange
from minibroker.log_store import RecordBatch

if TYPE_CHECKING:
    from minibroker.core.logs import Log


def empty_batch(offset: int) -> RecordBatch:
    """The answer to a read at ``offset`` that found nothing."""
    return RecordBatch(b"", 0, offset)


class ReadWaiter:
    """A long-poll read parked until the high watermark passes ``offset`` or the deadline."""

    __slots__ = ("log", "max_bytes", "max_records", "offset", "peer", "stored", "timer", "token")

    def __init__(
        self,
        log: Log,
        peer: Requester,
        token: int,
        offset: int,
        max_records: int,
        max_bytes: int,
        stored: bool = False,
    ) -> None:
        self.log = log
        self.peer = peer
        self.token = token
        self.offset = offset
        self.max_records = max_records
        self.max_bytes = max_bytes
        #: The reader takes batches of entries as stored (``read.batches``).
        self.stored = stored
        self.timer: Timer | None = None

    def detach(self) -> None:
        """Forget the waiter without answering it (its connection is gone)."""
        self.log.waiters.pop(self, None)
        self.log.logs._untrack(self.peer.conn_id, self)
        if self.timer is not None:
            self.timer.cancel()

    def expire(self, now: float) -> None:
        self.timer = None
        self.detach()
        self.peer.resolve(self.token, empty_batch(self.offset))

    def wake(self) -> None:
        """Records are readable at our offset (or the log went away): answer now.

        Unless the client is not reading (its connection holds more unsent
        output than ``takes_reply`` allows): then the answer is the
        deadline's, an empty batch at our offset, so the client reads from
        the same offset again once it reads, and loses nothing.
        """
        self.detach()
        peer = self.peer
        if not peer.takes_reply():
            peer.resolve(self.token, empty_batch(self.offset))
            return
        try:
            batch = self.log.read_at(self.offset, self.max_records, self.max_bytes, self.stored)
        except BrokerError as exc:
            peer.reject(self.token, exc)
            return
        peer.resolve(self.token, batch)


class LogTail:
    """A tail subscription: a cursor the connection drains when it has room.

    The tail holds no records. Each time the session asks (``take``) it reads
    the next chunk at its cursor, within the byte budget the session gives it
    (what is left below the connection's outbound high-water mark, never more
    than fits one frame beside the push's envelope). When it
    has caught up with the high watermark it goes *idle*; the next append
    (or group commit) re-announces it to its connection with ``push_ready``.
    """

    __slots__ = ("_on_end", "cursor", "idle", "log", "max_bytes", "peer", "stored", "sub_id")

    def __init__(
        self,
        log: Log,
        peer: Peer,
        sub_id: int,
        cursor: int,
        max_bytes: int,
        on_end: Callable[[BrokerError], None],
        stored: bool = False,
    ) -> None:
        self.log = log
        #: The subscriber takes batches of entries as stored (``read.batches``).
        self.stored = stored
        self.peer = peer
        self.sub_id = sub_id
        self.cursor = cursor
        self.max_bytes = max_bytes
        self.idle = False
        self._on_end = on_end

    def take(self, budget: int) -> RecordBatch | None:
        """The next chunk of records at the cursor (advancing it), or None when caught up.

        ``budget`` is bytes of record data; the front end has already set the
        frame's envelope aside. The chunk holds at most ``min(budget,
        max_bytes)`` bytes, or one record when the first alone is bigger.
        """
        log = self.log
        cursor = self.cursor
        end = log.high_watermark
        if cursor >= end or log.closed:
            self._go_idle()
            return None
        first = log.first_offset
        if cursor < first:
            self.end(
                OffsetOutOfRange(
                    f"tail of log {log.name!r} fell behind the log's start: offset {cursor} was "
                    f"deleted, the log now starts at {first}",
                    first_offset=first,
                )
            )
            return None
        limit = min(self.max_bytes, max(budget, 1))
        if self.stored:
            # Short of room, the next batch of entries still goes whole (within
            # max_bytes, which fits a frame) rather than framed on the way.
            batch = log.store.read_stored(cursor, end - cursor, limit, self.max_bytes)
        else:
            batch = log.store.read(cursor, end - cursor, limit)
        self.cursor = batch.next_offset
        return batch

    def has_more(self) -> bool:
        """True while records wait below the high watermark; otherwise go idle."""
        if self.cursor < self.log.high_watermark:
            return True
        self._go_idle()
        return False

    def _go_idle(self) -> None:
        if not self.idle:
            self.idle = True
            self.log.idle_tails[self] = None

    def wake(self) -> None:
        """New records are readable: ask the connection to drain us again."""
        self.idle = False
        self.peer.push_ready(self)

    def cancel(self, now: float) -> None:
        """The client unsubscribed."""
        self.detach()

    def detach(self) -> None:
        log = self.log
        log.tails.pop(self, None)
        log.idle_tails.pop(self, None)
        log.logs._untrack(self.peer.conn_id, self)

    def end(self, error: BrokerError) -> None:
        """End the subscription from the broker's side (log deleted, fell behind)."""
        self.detach()
        self._on_end(error)


#: What a connection can have waiting on a log.
Attachment = ReadWaiter | LogTail
