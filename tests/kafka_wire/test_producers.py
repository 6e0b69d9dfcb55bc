"""The idempotence table: retries answered with their first offset, gaps and old epochs refused."""

from __future__ import annotations

from minibroker.kafka.producers import (
    INVALID_PRODUCER_EPOCH,
    OUT_OF_ORDER_SEQUENCE_NUMBER,
    REMEMBERED,
    Producers,
    SequenceVerdict,
)


def test_a_retry_of_a_recent_batch_gets_its_first_offset() -> None:
    producers = Producers()
    for batch in range(REMEMBERED + 1):
        assert producers.check(7, 0, "t-0", batch * 10, batch * 10 + 9) == SequenceVerdict()
        producers.appended(7, 0, "t-0", batch * 10, batch * 10 + 9, 100 + batch * 10)
    assert producers.check(7, 0, "t-0", 50, 59) == SequenceVerdict(duplicate_of=150)
    # Older than the last five: no longer recognised, and not the next sequence either.
    assert producers.check(7, 0, "t-0", 0, 9).error == OUT_OF_ORDER_SEQUENCE_NUMBER


def test_gaps_and_stale_epochs_are_refused_and_a_new_epoch_starts_over() -> None:
    producers = Producers()
    producers.appended(7, 1, "t-0", 0, 4, 0)
    assert producers.check(7, 1, "t-0", 6, 6).error == OUT_OF_ORDER_SEQUENCE_NUMBER
    assert producers.check(7, 0, "t-0", 5, 5).error == INVALID_PRODUCER_EPOCH
    assert producers.check(7, 2, "t-0", 0, 0) == SequenceVerdict()


def test_the_table_forgets_the_oldest_producers_beyond_its_size() -> None:
    producers = Producers(max_tracked=3)
    for producer_id in range(4):
        producers.appended(producer_id, 0, "t-0", 0, 0, producer_id)
    # Producer 0 was forgotten: its retry is taken as new (as after a restart).
    assert producers.check(0, 0, "t-0", 0, 0) == SequenceVerdict()
    assert producers.check(3, 0, "t-0", 0, 0) == SequenceVerdict(duplicate_of=3)


def test_producer_ids_start_at_the_clock_and_never_repeat() -> None:
    producers = Producers()
    assert producers.new_id(1_000) == 1_000
    assert producers.new_id(900) == 1_001  # a clock that went back changes nothing
    assert producers.new_id(5_000) == 5_000
