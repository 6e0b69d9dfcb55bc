"""Deadlines for the core: a heap of (when, callback), read by the Trio shell.

The core never reads a clock. Models arm timers with an absolute time taken
from the ``now`` their caller passed in; the server's timer task sleeps until
``next_deadline()`` and then calls ``fire_due(now)``. Under Trio's MockClock
that sleep is instant, which is what makes visibility timeouts, TTLs and
request deadlines testable without waiting.

Cancelled timers stay in the heap and are skipped when they surface (lazy
deletion): cancelling is O(1), which matters because almost every
visibility-timeout timer is cancelled by an ack before it fires. Cancelling
drops the callback at once (it may hold a lease and its messages alive for
hours), and once cancelled timers are more than half the heap, the heap is
rebuilt without them, so a client that fetches with a 12-hour visibility
timeout and acks, over and over, does not grow the broker's memory.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

#: Cancelled timers tolerated in a heap before it may be compacted.
COMPACT_AFTER = 1024


def _disarmed(now: float) -> None:
    """The callback of a cancelled timer: holds nothing alive."""


class Timer:
    """One armed deadline; ``cancel()`` disarms it.

    Timers order by ``(when, seq)`` (the heap's order). A plain class, not a
    dataclass with ``order=True``: defining one of those costs a few million
    instructions at import (see :mod:`minibroker.value_class`).
    """

    __slots__ = ("callback", "cancelled", "owner", "seq", "when")
    __hash__ = None  # type: ignore[assignment]  # compared by (when, seq)

    def __init__(
        self,
        when: float,
        seq: int,
        callback: Callable[[float], None],
        cancelled: bool = False,
        owner: Timers | None = None,
    ) -> None:
        self.when = when
        self.seq = seq
        self.callback = callback
        self.cancelled = cancelled
        #: The heap this timer waits in, told of cancellations; None once out of it.
        self.owner = owner

    def __lt__(self, other: Timer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Timer:
            return NotImplemented
        return (self.when, self.seq) == (other.when, other.seq)

    def __repr__(self) -> str:
        return (
            f"Timer(when={self.when!r}, seq={self.seq!r}, callback={self.callback!r}, "
            f"cancelled={self.cancelled!r})"
        )

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self.callback = _disarmed
        owner = self.owner
        if owner is not None:
            owner.note_cancelled()


class Timers:
    """A min-heap of timers ordered by deadline, then by arming order."""

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._counter = itertools.count()
        #: Cancelled timers still in the heap.
        self._cancelled = 0

    def call_at(self, when: float, callback: Callable[[float], None]) -> Timer:
        """Run ``callback(now)`` once the clock reaches ``when``."""
        timer = Timer(when, next(self._counter), callback, owner=self)
        heapq.heappush(self._heap, timer)
        return timer

    def note_cancelled(self) -> None:
        """A timer in the heap was cancelled: compact once they dominate it."""
        self._cancelled += 1
        heap = self._heap
        if self._cancelled > COMPACT_AFTER and self._cancelled * 2 > len(heap):
            # In place: fire_due may be iterating this very list.
            heap[:] = [timer for timer in heap if not timer.cancelled]
            heapq.heapify(heap)
            self._cancelled = 0

    def _pop(self) -> Timer:
        timer = heapq.heappop(self._heap)
        timer.owner = None
        if timer.cancelled:
            self._cancelled -= 1
        return timer

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when nothing is armed."""
        heap = self._heap
        while heap and heap[0].cancelled:
            self._pop()
        return heap[0].when if heap else None

    def fire_due(self, now: float) -> int:
        """Run every live timer that was due at ``now`` when the call began.

        A timer armed by a callback during this call waits for the next
        call, even if it is already due: a callback that re-arms itself at
        ``now`` (a deadline too small to move the float clock, or a bug)
        then costs one call each time instead of looping here forever with
        the event loop blocked. The shell calls again right away when
        ``next_deadline()`` is already past, after letting other tasks run.
        """
        fired = 0
        heap = self._heap
        # Timers numbered from here on were armed by the callbacks below.
        armed_before = next(self._counter)
        later: list[Timer] = []
        while heap and heap[0].when <= now:
            timer = self._pop()
            if timer.seq > armed_before:
                timer.owner = self
                later.append(timer)
            elif not timer.cancelled:
                timer.cancelled = True
                timer.callback(now)
                fired += 1
        for timer in later:
            heapq.heappush(heap, timer)
        return fired

    def __len__(self) -> int:
        return sum(1 for t in self._heap if not t.cancelled)
