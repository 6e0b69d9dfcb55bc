"""A bounded cache of open read-only file descriptors for sealed segment files.

Why it exists: a descriptor per segment, held for the life of the log, runs
a process out of descriptors (``ulimit -n``, often 1024) as soon as a log
has many small segments or there are many logs; after that appends, reads
and even new client connections fail with ``EMFILE``. So only the active
segment of each log keeps its file open (it is written all the time), and
the older, *sealed* segments, which are only read, borrow a descriptor from
this cache for the length of one read. Kafka does the same: it keeps the
active segment open and opens older ones on demand.

One cache, :data:`SHARED_FD_CACHE`, serves every store in the process, so
the bound holds however many logs there are. It is a plain LRU: reading a
segment again soon (a consumer working through it, a replay) finds its
descriptor still open; a segment nobody reads gives its descriptor up when
:data:`DEFAULT_CAPACITY` others were used since. A miss costs one ``open``
and, later, one ``close`` (microseconds) next to a read of up to a
megabyte, so even a working set larger than the cache only slows reads a
little; it never fails them.

Thread safety: a process can run several brokers in threads (tests,
embedded use), all sharing the cache, so it takes a lock. A descriptor is
*pinned* while borrowed: eviction skips it, and a discarded one is closed
when its last borrower returns it. Closing a descriptor under a reader would
be worse than an error, since the number can be reused at once for another
file and the reader would read that file's bytes.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from itertools import islice
from types import TracebackType
from typing import Final

#: Sealed-segment descriptors kept open at most, per cache (so per process).
#: It is a small share of the usual soft limit of 1024, which the broker
#: needs for client sockets, the active segment and lock file of every store
#: (two descriptors per store) and passing index writes, and it still covers
#: dozens of consumers reading old segments at the same time: a consumer
#: reads one segment at a time, so each needs one entry to read without
#: reopening files.
DEFAULT_CAPACITY: Final = 64

_READ_FLAGS: Final = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


class FdCache:
    """At most ``capacity`` open read-only descriptors, the least recently used closed first.

    Descriptors are keyed by their *owner* (a segment object), not by path:
    a path can be deleted and created again (retention, recovery), while an
    owner is one file for its whole life. Owners call :meth:`discard` when
    their file is deleted or they close.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("an fd cache holds at least one descriptor")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[object, _Borrowed] = OrderedDict()  # oldest use first
        self._open = 0
        #: Files opened so far: every miss opens one (for tests and curiosity).
        self.opens = 0

    @property
    def open_count(self) -> int:
        """Descriptors this cache has open now, borrowed ones included."""
        return self._open

    def borrow(self, owner: object, path: str) -> _Borrowed:
        """Pin ``owner``'s descriptor, opening ``path`` read-only on a miss.

        Use as ``with cache.borrow(segment, path) as fd:``; the descriptor is
        only valid inside the ``with``. Raises ``OSError`` if the file cannot
        be opened (the caller turns it into a storage error).
        """
        with self._lock:
            entry = self._entries.get(owner)
            if entry is None:
                entry = _Borrowed(self, os.open(path, _READ_FLAGS))
                self._open += 1
                self.opens += 1
                self._entries[owner] = entry
            else:
                self._entries.move_to_end(owner)
            entry.pins += 1
            self._evict()
        return entry

    def discard(self, owner: object) -> None:
        """Close ``owner``'s descriptor (now, or when its last borrower returns it)."""
        with self._lock:
            entry = self._entries.pop(owner, None)
            if entry is not None:
                entry.dropped = True
                if not entry.pins:
                    self._close(entry)

    def _unpin(self, entry: _Borrowed) -> None:
        with self._lock:
            entry.pins -= 1
            if entry.dropped and not entry.pins:
                self._close(entry)
            else:
                self._evict()  # more borrowers than capacity may have left the cache over it

    def _evict(self) -> None:
        """Close least recently used, unpinned descriptors until within capacity."""
        excess = len(self._entries) - self.capacity
        if excess <= 0:
            return
        idle = (owner for owner, entry in self._entries.items() if not entry.pins)
        for owner in list(islice(idle, excess)):
            self._close(self._entries.pop(owner))

    def _close(self, entry: _Borrowed) -> None:
        self._open -= 1
        # A read-only descriptor has nothing to flush, and Linux frees it even
        # when close reports an error, so there is nothing to do about one.
        with contextlib.suppress(OSError):
            os.close(entry.fd)


class _Borrowed:
    """One cached descriptor; as a context manager, one borrowing of it."""

    __slots__ = ("cache", "dropped", "fd", "pins")

    def __init__(self, cache: FdCache, fd: int) -> None:
        self.cache = cache
        self.fd = fd
        self.pins = 0
        #: Discarded while borrowed: closed when the last borrower returns it.
        self.dropped = False

    def __enter__(self) -> int:
        return self.fd

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cache._unpin(self)


#: The cache every :class:`~minibroker.storage.commitlog.SegmentedLog` uses unless given another.
SHARED_FD_CACHE: Final = FdCache()
