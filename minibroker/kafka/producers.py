"""Idempotent producers: producer ids, and the sequence check that drops retried batches.

An idempotent producer (``enable.idempotence``; kafka-python's default)
gets a producer id from InitProducerId and numbers its batches per
partition. When a Produce times out it sends the batch again, and the broker
must not store it twice: a batch whose sequence numbers match one of the
last :data:`REMEMBERED` batches of that producer and partition is answered
with the offset it got the first time; a batch that skips numbers is
OUT_OF_ORDER_SEQUENCE; a batch from an older epoch of the producer id is
INVALID_PRODUCER_EPOCH. This is Kafka's rule (five batches in flight at most).

The table lives in memory and holds at most :data:`MAX_TRACKED` pairs
(the oldest go first). After a restart it is filled again from the logs, as
Kafka rebuilds its producer state from its segments: before the first
idempotent batch to a partition is checked, the batches among the last
:data:`TAIL_RECORDS` records of its log are read, and their producer ids
and sequences remembered (:meth:`Producers.learn_tail`). So a batch stored
just before a crash, whose answer its producer never got, is recognised
when the producer sends it again to the restarted broker, instead of being
stored twice. A producer id forgotten (or older than that tail) is
unknown, and its next batch is taken as it comes (Kafka would answer
UNKNOWN_PRODUCER_ID; the clients then bump their epoch and carry on).
Producer ids start from the wall clock in milliseconds, so ids handed out
after a restart do not collide with ones still in use.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

#: Batches remembered per producer and partition (Kafka's max.in.flight ceiling).
REMEMBERED: Final = 5
#: (producer, partition) pairs remembered at most; the oldest is forgotten
#: first (Kafka expires idle producers after a day; a broker serving test
#: suites sees a new producer id per test, so the table must not grow forever).
MAX_TRACKED: Final = 100_000

#: Records at the end of a partition's log whose batches are read to learn
#: the producers' sequences after a restart (a retry is one of a producer's
#: last five batches, so this covers many producers writing at once), and
#: the most bytes read for it: a tail of larger batches is read over fewer
#: records (but the last batch is always read).
TAIL_RECORDS: Final = 10_000
TAIL_BYTES: Final = 4 * 1024 * 1024

DUPLICATE_SEQUENCE_NUMBER: Final = 46
OUT_OF_ORDER_SEQUENCE_NUMBER: Final = 45
INVALID_PRODUCER_EPOCH: Final = 47


#: One stored batch as the tail reading finds it: producer id, epoch, first
#: and last sequence, first offset.
StoredSequence = tuple[int, int, int, int, int]


@dataclass(slots=True)
class _PartitionSequences:
    epoch: int
    #: (first sequence, last sequence, first offset) of the latest batches.
    batches: deque[tuple[int, int, int]] = field(default_factory=lambda: deque(maxlen=REMEMBERED))


@dataclass(frozen=True, slots=True)
class SequenceVerdict:
    """What to do with a batch: append it (``error`` 0, ``duplicate_of`` None),
    answer with an earlier offset (``duplicate_of``), or refuse (``error``)."""

    error: int = 0
    duplicate_of: int | None = None


APPEND: Final = SequenceVerdict()


class Producers:
    """Producer ids handed out and the recent batches of each (producer, partition)."""

    def __init__(self, max_tracked: int = MAX_TRACKED) -> None:
        self.max_tracked = max_tracked
        self._next_id = 0
        self._sequences: dict[tuple[int, str], _PartitionSequences] = {}
        #: Logs whose tail was read since start (see :meth:`learn_tail`).
        self._tails_read: set[str] = set()

    def new_id(self, now_ms: int) -> int:
        """A producer id never handed out before, by this process or (clock
        permitting) an earlier one: ids start at the wall clock in milliseconds."""
        producer_id = self._next_id = max(self._next_id, now_ms)
        self._next_id += 1
        return producer_id

    def check(
        self, producer_id: int, epoch: int, log: str, first_seq: int, last_seq: int
    ) -> SequenceVerdict:
        """Judge a batch before it is appended (``producer_id`` >= 0 only)."""
        state = self._sequences.get((producer_id, log))
        if state is None or epoch > state.epoch:
            return APPEND
        if epoch < state.epoch:
            return SequenceVerdict(error=INVALID_PRODUCER_EPOCH)
        for first, last, offset in state.batches:
            if first == first_seq and last == last_seq:
                return SequenceVerdict(duplicate_of=offset)
        if state.batches:
            expected = (state.batches[-1][1] + 1) & 0x7FFFFFFF
            if first_seq != expected:
                return SequenceVerdict(error=OUT_OF_ORDER_SEQUENCE_NUMBER)
        return APPEND

    def appended(
        self, producer_id: int, epoch: int, log: str, first_seq: int, last_seq: int, offset: int
    ) -> None:
        """Remember a batch that was appended at ``offset``."""
        key = (producer_id, log)
        state = self._sequences.get(key)
        if state is None or epoch > state.epoch:
            state = self._sequences[key] = _PartitionSequences(epoch)
            if len(self._sequences) > self.max_tracked:
                del self._sequences[next(iter(self._sequences))]
        state.batches.append((first_seq, last_seq, offset))

    def knows_tail(self, log: str) -> bool:
        """Whether the batches at the end of ``log`` were learnt since start."""
        return log in self._tails_read

    def learn_tail(self, log: str, batches: Iterable[StoredSequence]) -> None:
        """Remember the idempotent batches found at the end of ``log``, oldest
        first, as if they had just been appended (the first check of a log
        after a restart)."""
        self._tails_read.add(log)
        for producer_id, epoch, first_seq, last_seq, offset in batches:
            if producer_id >= 0:
                self.appended(producer_id, epoch, log, first_seq, last_seq, offset)

    def forget_log(self, log: str) -> None:
        """A topic was deleted: its partitions' sequences mean nothing any more."""
        self._tails_read.discard(log)
        for key in [key for key in self._sequences if key[1] == log]:
            del self._sequences[key]
