"""MockClock time travel: visibility timeouts, TTLs, deadlines and retention, instantly.

Every timer in the broker reads the Trio clock, so with pytest-trio's
``autojump_clock`` fixture (a ``trio.testing.MockClock(autojump_threshold=0)``)
a ``trio.sleep(31)`` returns at once, and every broker deadline due by then
has fired: the test takes milliseconds whatever the timeouts say.
"""

from __future__ import annotations

import pytest
import trio

import minibroker

pytestmark = pytest.mark.trio


# --- snippet: visibility timeout
async def test_an_unacked_job_comes_back(
    autojump_clock: trio.testing.MockClock, minibroker_client: minibroker.Client
) -> None:
    mb = minibroker_client
    await mb.declare_queue("jobs", visibility_timeout=30)
    await mb.put("jobs", b"job")
    [first] = await mb.fetch("jobs")  # ... and never acked: the worker hung

    await trio.sleep(29)
    assert await mb.fetch("jobs") == []  # still invisible
    await trio.sleep(2)
    [again] = await mb.fetch("jobs")  # 31 s later (no time passed at all)
    assert again.body == b"job"
    assert again.delivery_count == 2
    with pytest.raises(minibroker.UnknownDelivery):
        await first.ack()  # the first delivery is stale now
    await again.ack()
# --- end


# --- snippet: ttl and dead letters
async def test_expired_messages_are_dead_lettered(
    autojump_clock: trio.testing.MockClock, minibroker_client: minibroker.Client
) -> None:
    mb = minibroker_client
    await mb.declare_queue("offers.dead")
    await mb.declare_queue("offers", message_ttl=60, dead_letter_queue="offers.dead")
    await mb.put("offers", b"half price, today only")

    await trio.sleep(61)
    assert await mb.fetch("offers") == []
    [dead] = await mb.fetch("offers.dead")
    assert dead.headers is not None
    assert dead.headers["x-death-reason"] == "expired"
    assert dead.headers["x-death-queue"] == "offers"
# --- end


# --- snippet: request deadline
async def test_a_silent_responder_times_out(
    autojump_clock: trio.testing.MockClock, minibroker_client: minibroker.Client
) -> None:
    mb = minibroker_client
    async with mb.respond("svc.slow"):  # registered, but never answers
        start = trio.current_time()
        with pytest.raises(minibroker.Timeout):
            await mb.request("svc.slow", b"hello?", timeout=10.0)
        assert trio.current_time() - start == pytest.approx(10.0)
# --- end


# --- snippet: retention
async def test_old_segments_are_deleted(
    autojump_clock: trio.testing.MockClock, minibroker_client: minibroker.Client
) -> None:
    mb = minibroker_client
    await mb.create_log("metrics", retention_seconds=3600, segment_bytes=1024)
    for _ in range(3):  # each batch of ~1.2 KB fills a segment of its own
        await mb.append_many("metrics", [b"x" * 100 for _ in range(10)])

    await trio.sleep(7200)
    stats = await mb.log_stats("metrics")
    assert stats.first_offset == 20  # the two old segments went, the active one stays
    assert stats.next_offset == 30  # offsets never change meaning
    with pytest.raises(minibroker.OffsetOutOfRange) as gone:
        await mb.read("metrics", start=0)
    assert gone.value.details["first_offset"] == 20
# --- end
