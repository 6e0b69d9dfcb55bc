"""A queue's ready messages, in delivery order: a plain deque, or one that counts or ranks.

Most queues keep their ready messages in a ``collections.deque``: appends at
the back, requeues at the front (in publish order among earlier requeues:
:func:`return_in_order`), deliveries from the front, all in C. Two
options need more, and only queues declared with them pay for it:

* ``max_length_bytes`` needs the total body size of the ready messages at
  every put: :class:`CountedReady` is a deque that keeps it (``nbytes``).
* ``max_priority`` needs higher priorities delivered first:
  :class:`PriorityReady` keeps one deque per priority (0 .. max) and
  delivers from the highest non-empty one, FIFO within it, as RabbitMQ's
  priority queues do; it keeps ``nbytes`` too.

Both offer the part of the deque interface the queue uses (``extend``,
``extendleft``, ``popleft``, ``[0]``, ``len``, iteration in delivery order,
``clear``), so the queue's code is the same for all three; :func:`ready_for`
picks one from the options.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Iterator
from operator import attrgetter
from typing import Protocol

from minibroker.core.queue_message import Message
from minibroker.core.queue_options import QueueOptions


class Ready(Protocol):
    """What a queue needs of its ready messages (``deque[Message]`` has it all)."""

    def extend(self, messages: Iterable[Message], /) -> None: ...
    def extendleft(self, messages: Iterable[Message], /) -> None: ...
    def popleft(self) -> Message: ...
    def clear(self) -> None: ...
    def __getitem__(self, index: int, /) -> Message: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Message]: ...


class CountedReady(deque[Message]):
    """A deque of messages that knows the total size of their bodies."""

    def __init__(self, messages: Iterable[Message] = ()) -> None:
        super().__init__(messages)
        #: Body bytes of the messages held.
        self.nbytes = sum(len(m.body) for m in self)

    def extend(self, messages: Iterable[Message], /) -> None:
        messages = list(messages)
        super().extend(messages)
        self.nbytes += sum(len(m.body) for m in messages)

    def extendleft(self, messages: Iterable[Message], /) -> None:
        messages = list(messages)
        super().extendleft(messages)
        self.nbytes += sum(len(m.body) for m in messages)

    def popleft(self) -> Message:
        m = super().popleft()
        self.nbytes -= len(m.body)
        return m

    def insert(self, index: int, m: Message, /) -> None:
        super().insert(index, m)
        self.nbytes += len(m.body)

    def clear(self) -> None:
        super().clear()
        self.nbytes = 0


class PriorityReady:
    """Ready messages by priority: the highest first, FIFO within a priority.

    A message's ``priority`` above ``max_priority`` counts as ``max_priority``
    (RabbitMQ's rule). ``_top`` is at least the highest non-empty level, so
    finding the head scans down only past levels emptied since.
    """

    __slots__ = ("_count", "_levels", "_top", "nbytes")

    def __init__(self, max_priority: int, messages: Iterable[Message] = ()) -> None:
        self._levels: list[deque[Message]] = [deque() for _ in range(max_priority + 1)]
        self._count = 0
        self._top = 0
        self.nbytes = 0
        self.extend(messages)

    def extend(self, messages: Iterable[Message], /) -> None:
        """Add at the back of each message's priority."""
        levels = self._levels
        top = len(levels) - 1
        for m in messages:
            level = min(m.priority, top)
            levels[level].append(m)
            self._count += 1
            self.nbytes += len(m.body)
            if level > self._top:
                self._top = level

    def extendleft(self, messages: Iterable[Message], /) -> None:
        """Add at the front of each message's priority, one at a time (as a deque does)."""
        levels = self._levels
        top = len(levels) - 1
        for m in messages:
            level = min(m.priority, top)
            levels[level].appendleft(m)
            self._count += 1
            self.nbytes += len(m.body)
            if level > self._top:
                self._top = level

    def return_in_order(self, messages: list[Message]) -> None:
        """:func:`return_in_order` for each message's priority: among the
        returned messages at the front of its level (FIFO within a level)."""
        levels = self._levels
        top = len(levels) - 1
        by_level: dict[int, list[Message]] = {}
        for m in messages:
            by_level.setdefault(min(m.priority, top), []).append(m)
        for level, returned in by_level.items():
            _merge_front(levels[level], returned)
            self._count += len(returned)
            self.nbytes += sum(len(m.body) for m in returned)
            if level > self._top:
                self._top = level

    def _head_level(self) -> deque[Message]:
        levels = self._levels
        top = self._top
        while top and not levels[top]:
            top -= 1
        self._top = top
        level = levels[top]
        if not level:
            raise IndexError("no ready messages")
        return level

    def popleft(self) -> Message:
        m = self._head_level().popleft()
        self._count -= 1
        self.nbytes -= len(m.body)
        return m

    def __getitem__(self, index: int) -> Message:
        if index != 0:
            raise IndexError("only the head of a priority queue can be read")
        return self._head_level()[0]

    def clear(self) -> None:
        for level in self._levels:
            level.clear()
        self._count = self._top = self.nbytes = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Message]:
        for level in reversed(self._levels):
            yield from level


_seq_of = attrgetter("seq")

#: Returns of at most this many messages are placed one by one, each by a
#: binary search (``_insert_each``); larger ones are merged in one pass.
_BISECT_MOST = 16
#: Above every ``Message.seq`` (journal offsets and delivery ids).
_AFTER_RUN = 1 << 64


def _run_key(m: Message) -> int:
    """A ready message's place for the binary search: returned ones by publish
    order, never delivered ones after all of them."""
    return m.seq if m.delivery_count else _AFTER_RUN


def _merge_front(ready: deque[Message], messages: list[Message]) -> None:
    """Merge ``messages`` into the run of returned messages at the front of ``ready``.

    The invariant that makes this cheap: the ready messages start with a run
    of messages delivered before (``delivery_count`` > 0) in publish order
    (``Message.seq``), then come the others, never delivered, which were
    published after all of them (a queue delivers what it never delivered
    in publish order). Returns older than the run's head, the common case (a
    closed channel, a nack of a whole fetch, a nack of the oldest message),
    cost a sort that finds one run and an ``extendleft``. A few messages
    (one at a time: basic.reject) are each put where a binary search of the
    run finds its place, in C; more are merged with the run's messages
    published before the newest of them, popped and put back.
    """
    if len(messages) > 1:
        messages = sorted(messages, key=_seq_of)
    if ready:
        head = ready[0]
        if head.delivery_count and head.seq <= messages[-1].seq:
            if len(messages) <= _BISECT_MOST:
                left = _insert_each(ready, messages)
                if not left:
                    return
                messages = messages[:left]
            messages = _merged_with_run(ready, messages)
    ready.extendleft(reversed(messages))


def _insert_each(ready: deque[Message], messages: list[Message]) -> int:
    """Insert ``messages`` (in publish order) into the run, newest first, each
    at the place a binary search finds; return how many are left (0: all).

    Stops, leaving the older ones, at a place that is not in the run (a
    message never delivered just before it: the invariant does not hold).
    """
    left = len(messages)
    while left:
        m = messages[left - 1]
        at = bisect_right(ready, m.seq, key=_run_key)
        if at and not ready[at - 1].delivery_count:
            return left
        ready.insert(at, m)
        left -= 1
    return 0


def _merged_with_run(ready: deque[Message], messages: list[Message]) -> list[Message]:
    """Pop the run's messages published before the newest of ``messages`` and
    return them merged with ``messages`` (a sort of two sorted runs: linear)."""
    newest = messages[-1].seq
    ahead: list[Message] = []
    popleft = ready.popleft
    while ready:
        m = ready[0]
        if not m.delivery_count or m.seq > newest:
            break
        ahead.append(popleft())
    ahead.extend(messages)
    return sorted(ahead, key=_seq_of)


def return_in_order(ready: Ready, messages: list[Message]) -> None:
    """Put messages that come back from consumers (nack, timeout, disconnect)
    among the returned messages at the front of ``ready``, in publish order.

    As RabbitMQ: "a requeued message is placed back at its original
    position in the queue if possible", so messages requeued one at a time,
    in any order, are delivered again in the order they were published.
    Every returned message has its ``seq`` (the journal's, or its first
    delivery id: see ``Queue._deliver``).
    """
    if type(ready) is PriorityReady:
        ready.return_in_order(messages)
    else:
        _merge_front(ready, messages)  # type: ignore[arg-type]


def ready_for(options: QueueOptions, messages: Iterable[Message] = ()) -> Ready:
    """The container a queue with ``options`` keeps its ready messages in."""
    if options.max_priority is not None:
        return PriorityReady(options.max_priority, messages)
    if options.max_length_bytes is not None:
        return CountedReady(messages)
    return deque(messages)


def ready_bytes(ready: Ready) -> int:
    """Body bytes of the ready messages (counted by the containers that count them)."""
    counted = getattr(ready, "nbytes", None)
    if counted is not None:
        return int(counted)
    return sum(len(m.body) for m in ready)
