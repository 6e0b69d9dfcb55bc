"""Every duration of every op has a floor (1 ms) and a ceiling, over the protocol.

Issue 14 item 1; the timer-loop half is in tests/core/test_durations.py.
"""

from __future__ import annotations

import pytest
from helpers import Net

from minibroker.core.durations import MIN_SECONDS

TINY = [1e-300, 5e-324, 1e-9, 0.0009]


# ------------------------------------------- every duration of every op


@pytest.mark.parametrize("value", TINY)
@pytest.mark.parametrize(
    ("op", "fields"),
    [
        ("queue.declare", {"queue": "q2", "message_ttl": None}),
        ("queue.declare", {"queue": "q2", "visibility_timeout": None}),
        ("fetch", {"queue": "q", "wait": None}),
        ("fetch", {"queue": "q", "visibility_timeout": None}),
        ("log.create", {"log": "l2", "retention_seconds": None}),
        ("read", {"log": "l", "wait": None}),
        ("request", {"subject": "svc", "timeout": None}),
    ],
)
def test_every_duration_below_a_millisecond_is_a_bad_request(
    op: str, fields: dict[str, object], value: float
) -> None:
    net = Net()
    a = net.connect()
    a.call("queue.declare", queue="q")
    a.call("log.create", log="l")
    a.call("respond", subject="svc")
    field = next(k for k, v in fields.items() if v is None)
    error = a.error(op, **{**fields, field: value})
    assert error.code == "bad_request"
    assert f"{field} must be" in error.message and "0.001" in error.message


@pytest.mark.parametrize("value", TINY)
def test_a_nack_delay_below_a_millisecond_is_a_bad_request(value: float) -> None:
    net = Net()
    a = net.connect()
    a.call("queue.declare", queue="q")
    a.call("put", queue="q", messages=[{"body": b"x"}])
    [delivery] = a.call("fetch", queue="q")
    error = a.error("nack", queue="q", deliveries=[delivery["delivery_id"]], delay=value)
    assert error.code == "bad_request" and "delay must be 0 or between" in error.message
    assert a.call("nack", queue="q", deliveries=[delivery["delivery_id"]], delay=0) == {"count": 1}


# -------------------------------------------------- the two triggers


def test_log_retention_of_1e_300_is_refused_and_a_millisecond_rolls_fine() -> None:
    net = Net()
    a = net.connect()
    error = a.error("log.create", log="l", retention_seconds=1e-300, segment_bytes=1024)
    assert error.code == "bad_request"
    a.call("log.create", log="l", retention_seconds=MIN_SECONDS, segment_bytes=1024)
    for _ in range(20):  # several segment rolls, each arming retention
        a.call("append", log="l", records=[b"x" * 200])
        net.advance(MIN_SECONDS)
    assert a.call("log.stats", log="l")["first_offset"] > 0


def test_two_queues_dead_lettering_into_each_other_with_a_1e_300_ttl_are_refused() -> None:
    net = Net()
    a = net.connect()
    for queue, other in (("A", "B"), ("B", "A")):
        error = a.error("queue.declare", queue=queue, message_ttl=1e-300, dead_letter_queue=other)
        assert error.code == "bad_request" and "message_ttl" in error.message


# ------------------------------------ the AMQP-only "until settled" value


@pytest.mark.parametrize("compact", [False, True])
def test_a_fetch_with_an_infinite_visibility_timeout_is_a_bad_request(compact: bool) -> None:
    """``math.inf`` is the core's ``UNTIL_SETTLED`` (AMQP consumers hold a
    message until they settle it); a msgpack client sending it held the
    message past the 12-hour ceiling, until its connection closed."""
    net = Net()
    a = net.connect()
    a.call("queue.declare", queue="q")
    a.call("put", queue="q", messages=[{"body": b"x"}])
    error = a.error("fetch", queue="q", visibility_timeout=float("inf"), compact=compact)
    assert error.code == "bad_request" and "visibility_timeout must be between" in error.message
    assert a.call("queue.stats", queue="q")["ready"] == 1
