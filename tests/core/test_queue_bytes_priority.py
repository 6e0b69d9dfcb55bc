"""A queue's byte limit (``max_length_bytes``) and priorities (``max_priority``), in the core."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_queues import A, In, World, bodies, check_conservation, ids
from test_queues_journal import Site, _journal, ready_bodies

from minibroker.core import queues as queues_module
from minibroker.core.queue_journal import CompactionSettings
from minibroker.core.queues import Queue
from minibroker.errors import BadRequest, Overflow


@pytest.fixture
def w() -> World:
    return World()


@pytest.fixture(params=["disk", "memory"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path if request.param == "disk" else None)
    yield s
    s.broker.close()


@pytest.fixture
def small_site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A memory site whose journals compact early (small segments)."""
    settings = CompactionSettings(
        segment_bytes=16384, check_bytes=4096, min_bytes=32768, live_ratio=0.5, move_bytes=8192
    )
    monkeypatch.setattr(queues_module, "compaction_defaults", settings)
    s = Site(None)
    yield s
    s.broker.close()


def _put(q: Queue, now: float, *sized: str, priority: int | None = None) -> None:
    q.put([In(s.encode()) for s in sized], now, priority=priority)


# --------------------------------------------------------------- max_length_bytes


def test_reject_publish_counts_the_bodies_of_ready_messages(w: World) -> None:
    q = w.declare(max_length_bytes=10, overflow="reject_publish")
    _put(q, w.now, "aaaa", "bbbb")
    _put(q, w.now, "cc")  # exactly 10
    with pytest.raises(Overflow) as info:
        _put(q, w.now, "d")
    assert info.value.details == {
        "queue": "q",
        "max_length_bytes": 10,
        "ready_bytes": 10,
        "ready": 3,
    }
    held = q.fetch(A, 1, w.now)  # in-flight bodies do not count
    _put(q, w.now, "dddd")
    q.nack(A, ids(held), w.now)  # a requeue is never refused, but counts for the next put
    with pytest.raises(Overflow):
        _put(q, w.now, "e")
    assert bodies(q.inspect(10).ready) == [b"aaaa", b"bbbb", b"cc", b"dddd"]
    assert q.statistics().rejected_publishes == 2
    check_conservation(q)


def test_a_batch_over_the_byte_limit_is_refused_whole(w: World) -> None:
    q = w.declare(max_length_bytes=5)
    with pytest.raises(Overflow):
        _put(q, w.now, "abc", "def")
    assert q.statistics().ready == 0


def test_drop_head_drops_until_the_bytes_fit_again(w: World) -> None:
    w.declare("dead")
    q = w.declare(max_length_bytes=10, overflow="drop_head", dead_letter_queue="dead")
    _put(q, w.now, "aaaa", "bbbb", "cc")
    _put(q, w.now, "ddd")
    assert bodies(q.inspect(10).ready) == [b"bbbb", b"cc", b"ddd"]
    _put(q, w.now, "e" * 11)  # bigger than the limit: it goes too, as in RabbitMQ
    assert bodies(q.inspect(10).ready) == []
    dead = w.queues.get("dead").inspect(10).ready
    assert bodies(dead) == [b"aaaa", b"bbbb", b"cc", b"ddd", b"e" * 11]
    assert {m.headers["x-death-reason"] for m in dead if m.headers} == {"overflow"}
    check_conservation(q)


def test_both_limits_apply_together(w: World) -> None:
    q = w.declare(max_length=3, max_length_bytes=100, overflow="drop_head")
    _put(q, w.now, "a", "b", "c", "d")
    assert bodies(q.inspect(10).ready) == [b"b", b"c", b"d"]
    _put(q, w.now, "x" * 99)
    assert bodies(q.inspect(10).ready) == [b"d", b"x" * 99]


def test_reject_publish_dlx_dead_letters_what_it_refuses(w: World) -> None:
    w.declare("dead")
    q = w.declare(max_length=1, overflow="reject_publish_dlx", dead_letter_queue="dead")
    _put(q, w.now, "kept")
    with pytest.raises(Overflow):
        _put(q, w.now, "refused")
    [letter] = w.queues.get("dead").inspect(10).ready
    assert letter.body == b"refused"
    assert letter.headers is not None and letter.headers["x-death-reason"] == "overflow"
    stats = q.statistics()
    assert (stats.published, stats.rejected_publishes, stats.dead_lettered) == (1, 1, 0)
    check_conservation(q)


def test_a_full_reject_publish_dlx_dead_letter_queue_passes_dead_letters_on(w: World) -> None:
    # As RabbitMQ: a dead letter the full queue refuses dies there too (reason
    # maxlen, "overflow" here) and goes on to that queue's own dead-letter queue.
    w.declare("last")
    dlq = w.declare("dlq", max_length=1, overflow="reject_publish_dlx", dead_letter_queue="last")
    q = w.declare("q", dead_letter_queue="dlq")
    _put(dlq, w.now, "filler")
    _put(q, w.now, "m")
    [m] = q.fetch(A, 1, w.now)
    q.nack(A, [m.delivery_id], w.now, requeue=False)
    assert bodies(dlq.inspect(10).ready) == [b"filler"]
    [letter] = w.queues.get("last").inspect(10).ready
    assert letter.body == b"m"
    assert letter.headers is not None
    assert letter.headers["x-death-reason"] == "overflow"
    assert letter.headers["x-death-queue"] == "dlq"
    assert letter.headers["x-death-hops"] == "2"
    assert letter.headers["x-death-path"] == "dlq"
    assert dlq.statistics().rejected_publishes == 1
    assert q.statistics().dead_lettered == 1
    check_conservation(q)


def test_a_full_reject_publish_dead_letter_queue_drops_dead_letters(w: World) -> None:
    w.declare("last")
    dlq = w.declare("dlq", max_length=1, overflow="reject_publish", dead_letter_queue="last")
    q = w.declare("q", dead_letter_queue="dlq")
    _put(dlq, w.now, "filler")
    _put(q, w.now, "m")
    [m] = q.fetch(A, 1, w.now)
    q.nack(A, [m.delivery_id], w.now, requeue=False)
    assert w.queues.get("last").statistics().ready == 0
    assert (q.statistics().dropped, dlq.statistics().rejected_publishes) == (1, 1)
    check_conservation(q)


def test_byte_counting_starts_when_a_reconfigure_asks_for_it(w: World) -> None:
    q = w.declare()
    _put(q, w.now, "aaaa", "bbbb")
    w.queues.reconfigure("q", q.options.__class__(max_length_bytes=9), w.now)
    with pytest.raises(Overflow):
        _put(q, w.now, "cc")
    _put(q, w.now, "c")
    assert q.statistics().ready == 3


def test_max_length_bytes_must_be_a_count(w: World) -> None:
    with pytest.raises(BadRequest, match="max_length_bytes"):
        w.declare(max_length_bytes=-1)


# ----------------------------------------------------------------- max_priority


def test_higher_priorities_first_fifo_within_one_and_above_max_counts_as_max(w: World) -> None:
    """The order RabbitMQ 3.10 gave for the same publishes (x-max-priority 5)."""
    q = w.declare(max_priority=5)
    for i, priority in enumerate([None, 9, 3, 5, 0, 7, 3]):
        _put(q, w.now, f"m{i}", priority=priority)
    got = q.fetch(A, 10, w.now)
    assert bodies(got) == [b"m1", b"m3", b"m5", b"m2", b"m6", b"m0", b"m4"]
    assert [m.priority for m in got] == [9, 5, 7, 3, 3, 0, 0]


def test_a_requeued_message_goes_back_to_the_front_of_its_priority(w: World) -> None:
    q = w.declare(max_priority=2)
    _put(q, w.now, "low", priority=0)
    _put(q, w.now, "high1", "high2", priority=2)
    first = q.fetch(A, 1, w.now)
    _put(q, w.now, "high3", priority=2)
    q.nack(A, ids(first), w.now)
    assert bodies(q.fetch(A, 10, w.now)) == [b"high1", b"high2", b"high3", b"low"]


def test_a_queue_without_max_priority_ignores_priorities(w: World) -> None:
    q = w.declare()
    _put(q, w.now, "a", priority=0)
    _put(q, w.now, "b", priority=9)
    got = q.fetch(A, 10, w.now)
    assert bodies(got) == [b"a", b"b"]
    assert [m.priority for m in got] == [0, 0]


def test_priorities_with_ttl_drop_head_and_purge(w: World) -> None:
    q = w.declare(max_priority=3, max_length=2, overflow="drop_head", message_ttl=5.0)
    _put(q, w.now, "low", priority=1)
    _put(q, w.now, "high", priority=3)
    _put(q, w.now, "mid", priority=2)  # drop_head drops the head: "high"
    assert bodies(q.inspect(10).ready) == [b"mid", b"low"]
    w.now += 6
    w.broker.on_time(w.now)
    assert q.statistics().ready == 0 and q.statistics().expired == 2
    _put(q, w.now, "x", priority=2)
    assert q.purge(w.now) == 1
    check_conservation(q)


def test_priority_is_checked(w: World) -> None:
    q = w.declare(max_priority=3)
    with pytest.raises(BadRequest, match="priority"):
        _put(q, w.now, "x", priority=256)
    with pytest.raises(BadRequest, match="max_priority"):
        w.declare("other", max_priority=256)
    with pytest.raises(BadRequest, match="max_priority cannot change"):
        w.queues.reconfigure("q", q.options.__class__(max_priority=4), w.now)


def test_priorities_and_bytes_survive_a_restart(site: Site) -> None:
    q = site.declare(max_priority=9, max_length_bytes=100)
    _put(q, site.now, "plain")
    _put(q, site.now, "urgent", priority=9)
    _put(q, site.now, "soon", priority=4)
    site.restart()
    q = site.queues.get("q")
    assert ready_bodies(q) == [b"urgent", b"soon", b"plain"]
    with pytest.raises(Overflow):
        _put(q, site.now, "x" * 86)  # 15 bytes are ready
    _put(q, site.now, "x" * 85, priority=1)
    assert ready_bodies(q)[-2:] == [b"x" * 85, b"plain"]


def test_a_dead_letter_keeps_its_priority_across_a_restart(site: Site) -> None:
    site.declare("dead", max_priority=5)
    q = site.declare(dead_letter_queue="dead", max_priority=5)
    _put(q, site.now, "a", priority=1)
    _put(q, site.now, "b", priority=5)
    q.nack(A, ids(q.fetch(A, 2, site.now)), site.now, requeue=False)
    _put(site.queues.get("dead"), site.now, "c", priority=3)
    site.restart()
    got = site.queues.get("dead").fetch(A, 10, site.now)
    assert bodies(got) == [b"b", b"c", b"a"]
    assert [m.priority for m in got] == [5, 3, 1]


def test_compaction_keeps_priorities(small_site: Site) -> None:
    site = small_site
    q = site.declare(max_priority=5, visibility_timeout=10_000.0)
    _put(q, site.now, "pinned", priority=5)
    _put(q, site.now, "kept", priority=2)
    stuck = q.fetch(A, 1, site.now)
    for _ in range(300):
        q.put([In(b"y" * 100)] * 10, site.now, priority=3)
        q.ack(A, ids(q.fetch(A, 10, site.now)), site.now)
    assert _journal(site).stats.messages_moved >= 1
    q.nack(A, ids(stuck), site.now)
    site.restart()
    got = site.queues.get("q").fetch(A, 10, site.now)
    assert [(m.body, m.priority) for m in got] == [(b"pinned", 5), (b"kept", 2)]
