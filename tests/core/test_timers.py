"""Durations have a floor and a ceiling, and no deadline can freeze the timer loop.

Issue 14 item 1: a timer armed at ``now + 1e-300`` is armed at ``now``; one
that re-arms itself that way made ``Timers.fire_due`` loop forever with the
event loop blocked. Two client requests did it (log retention 1e-300 with a
rolled segment; two queues dead-lettering into each other with a 1e-300 TTL).
"""

from __future__ import annotations

import math
import weakref

import pytest

from minibroker.core.durations import MIN_SECONDS, check_seconds, clamp_seconds
from minibroker.core.log_options import MAX_RETENTION_SECONDS, LogOptions
from minibroker.core.queue_options import MAX_MESSAGE_TTL, QueueOptions
from minibroker.core.timers import COMPACT_AFTER, Timers
from minibroker.errors import BadRequest

TINY = [1e-300, 5e-324, 1e-9, 0.0009]


# ------------------------------------------------------------------ timers


def test_a_timer_that_rearms_itself_at_now_fires_once_per_call() -> None:
    timers = Timers()
    calls: list[float] = []

    def again(now: float) -> None:
        calls.append(now)
        # A bound so that a regression fails the assertion below instead of
        # hanging the test run (the unfixed loop would spin forever).
        if len(calls) < 10_000:
            timers.call_at(now + 1e-300, again)

    timers.call_at(5.0, again)
    assert timers.fire_due(5.0) == 1
    assert timers.fire_due(5.0) == 1
    assert calls == [5.0, 5.0]
    assert timers.next_deadline() == 5.0


def test_due_timers_behind_a_newly_armed_one_still_fire_in_the_same_call() -> None:
    timers = Timers()
    fired: list[str] = []
    timers.call_at(1.0, lambda now: (fired.append("first"), timers.call_at(1.0, fired.append)))
    timers.call_at(2.0, lambda now: fired.append("second"))
    assert timers.fire_due(3.0) == 2
    assert fired == ["first", "second"]
    assert timers.fire_due(3.0) == 1  # the one armed during the first call
    assert fired == ["first", "second", 3.0]


# ---------------------------------------------------------------- the rule


@pytest.mark.parametrize("value", [*TINY, -1.0, math.nan, math.inf, 11.0])
def test_check_seconds_refuses_what_is_out_of_range(value: float) -> None:
    with pytest.raises(BadRequest, match=r"wait must be 0 or between 0.001 and 10 seconds"):
        check_seconds("wait", value, 10.0, allow_zero=True)


def test_check_seconds_keeps_zero_only_where_it_means_something() -> None:
    assert check_seconds("wait", 0, 10.0, allow_zero=True) == 0.0
    assert check_seconds("wait", MIN_SECONDS, 10.0) == MIN_SECONDS
    with pytest.raises(BadRequest, match=r"between 0\.001 and 10 seconds"):
        check_seconds("timeout", 0.0, 10.0)


def test_stored_options_are_clamped_not_refused() -> None:
    """A durable queue or log declared by an older broker must still recover."""
    queue = QueueOptions.from_dict({"message_ttl": 1e-300, "visibility_timeout": 5e-324})
    assert queue.message_ttl == MIN_SECONDS
    assert queue.visibility_timeout == MIN_SECONDS
    log = LogOptions.from_dict({"retention_seconds": 1e-300})
    assert log.retention_seconds == MIN_SECONDS
    assert clamp_seconds(1e300, MAX_MESSAGE_TTL) == MAX_MESSAGE_TTL
    assert clamp_seconds(math.inf, MAX_RETENTION_SECONDS) == MAX_RETENTION_SECONDS


def test_cancelled_timers_release_their_callbacks_and_leave_the_heap() -> None:
    """A consumer that fetches with a 12-hour visibility timeout and acks, over
    and over, must not keep every lease alive until its deadline (issue 14)."""

    class Lease:
        pass

    timers = Timers()
    leases = []

    def fetch_and_ack() -> None:
        lease = Lease()
        leases.append(weakref.ref(lease))
        timers.call_at(43_200.0, lambda now: print(lease)).cancel()

    for _ in range(10_000):
        fetch_and_ack()
    live = timers.call_at(1.0, lambda now: None)
    assert all(ref() is None for ref in leases)
    assert len(timers._heap) <= 2 * COMPACT_AFTER + 1
    assert timers.next_deadline() == 1.0
    live.cancel()
    assert timers.next_deadline() is None


def test_timers_cancelled_by_a_firing_callback_are_compacted_safely() -> None:
    """Compaction may run while fire_due pops the same heap."""
    timers = Timers()
    fired: list[float] = []
    doomed = [timers.call_at(5.0 + i, lambda now: fired.append(now)) for i in range(3000)]

    def cancel_them_all(now: float) -> None:
        for timer in doomed:
            timer.cancel()

    timers.call_at(1.0, cancel_them_all)
    survivor = timers.call_at(2.0, lambda now: fired.append(now))
    assert timers.fire_due(10_000.0) == 2
    assert fired == [10_000.0]
    assert survivor.cancelled
    assert timers.next_deadline() is None
