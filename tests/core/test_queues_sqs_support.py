"""The queue core's operations that the SQS front end needs: delayed puts and
changing an in-flight message's visibility deadline and a queue's options
in place (DelaySeconds, ChangeMessageVisibility, SetQueueAttributes). Driven
directly, no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_queues import A, B, In, World, bodies, check_conservation, ids, put
from test_queues_journal import Site

from minibroker.core.queues import QueueOptions
from minibroker.errors import BadRequest, UnknownDelivery


@pytest.fixture
def w() -> World:
    return World()


def test_put_with_delay_waits_as_delayed_then_joins_the_back(w: World) -> None:
    q = w.declare()
    put(q, w.now, "first")
    q.put([In(b"late")], w.now, delay=10)
    put(q, w.now, "second")
    assert q.statistics().delayed == 1
    assert bodies(q.fetch(A, 10, w.now)) == [b"first", b"second"]
    w.advance(9.9)
    assert q.fetch(A, 10, w.now) == []
    put(q, w.now, "third")
    w.advance(0.1)
    # Joins the back of the queue, behind what was put while it waited.
    assert bodies(q.fetch(A, 10, w.now)) == [b"third", b"late"]
    assert q.statistics().delayed == 0
    check_conservation(q)


def test_delayed_put_feeds_a_parked_fetch_when_due(w: World) -> None:
    q = w.declare()
    q.put([In(b"x")], w.now, delay=5)
    peer = _Recorder(3)
    q.wait(peer, 7, 1, w.now, timeout=20)
    w.advance(5)
    assert peer.resolved == {7: [b"x"]}


def test_delayed_put_counts_and_purges(w: World) -> None:
    q = w.declare()
    q.put([In(b"a"), In(b"b")], w.now, delay=30)
    s = q.statistics()
    assert (s.published, s.delayed, s.ready) == (2, 2, 0)
    assert q.purge(w.now) == 2
    w.advance(31)
    assert q.fetch(A, 10, w.now) == []
    check_conservation(q)


def test_put_refuses_a_bad_delay(w: World) -> None:
    q = w.declare()
    with pytest.raises(BadRequest):
        q.put([In(b"a")], w.now, delay=-1)
    with pytest.raises(BadRequest):
        q.put([In(b"a")], w.now, delay=13 * 3600)
    assert q.statistics().published == 0


def test_change_visibility_extends_one_message_of_a_fetch(w: World) -> None:
    q = w.declare(visibility_timeout=10)
    put(q, w.now, "a", "b")
    got = q.fetch(A, 2, w.now)
    a_id, _ = ids(got)
    assert q.change_visibility(A, [a_id], w.now, 60) == 1
    w.advance(10)
    # b came back with its fetch's lease; a stays in flight under its own.
    back = q.fetch(B, 10, w.now)
    assert bodies(back) == [b"b"]
    assert q.statistics().in_flight == 2
    q.ack(B, ids(back), w.now)
    w.advance(50)
    assert bodies(q.fetch(B, 10, w.now)) == [b"a"]
    check_conservation(q)


def test_change_visibility_keeps_the_delivery_id_valid(w: World) -> None:
    q = w.declare(visibility_timeout=10)
    put(q, w.now, "a")
    (m,) = q.fetch(A, 1, w.now)
    delivery_id = m.delivery_id
    q.change_visibility(A, [delivery_id], w.now, 100)
    w.advance(50)
    assert q.ack(A, [delivery_id], w.now) == 1
    w.advance(100)
    assert q.fetch(A, 1, w.now) == []
    s = q.statistics()
    assert (s.acked, s.in_flight, s.ready) == (1, 0, 0)


def test_change_visibility_can_shorten_and_zero_requeues(w: World) -> None:
    q = w.declare(visibility_timeout=100)
    put(q, w.now, "a", "b")
    a, b = ids(q.fetch(A, 2, w.now))
    q.change_visibility(A, [a], w.now, 1)
    assert q.change_visibility(A, [b], w.now, 0) == 1
    assert bodies(q.fetch(B, 10, w.now)) == [b"b"]
    w.advance(1)
    got = q.fetch(B, 10, w.now)
    assert bodies(got) == [b"a"]
    assert got[0].delivery_count == 2


def test_change_visibility_is_all_or_nothing(w: World) -> None:
    q = w.declare(visibility_timeout=10)
    put(q, w.now, "a")
    (m,) = q.fetch(A, 1, w.now)
    with pytest.raises(UnknownDelivery):
        q.change_visibility(A, [m.delivery_id, 999], w.now, 60)
    with pytest.raises(UnknownDelivery):
        q.change_visibility(B, [m.delivery_id], w.now, 60)
    w.advance(10)  # unchanged: the original deadline still holds
    assert bodies(q.fetch(B, 1, w.now)) == [b"a"]


def test_change_visibility_then_disconnect_requeues_once(w: World) -> None:
    q = w.declare(visibility_timeout=10)
    put(q, w.now, "a", "b")
    a, _ = ids(q.fetch(A, 2, w.now))
    q.change_visibility(A, [a, a], w.now, 60)
    q.disconnect(A.conn_id, w.now)
    assert sorted(bodies(q.fetch(B, 10, w.now))) == [b"a", b"b"]
    assert q.statistics().in_flight == 2
    check_conservation(q)


def test_purge_held_removes_one_holders_in_flight_messages(w: World) -> None:
    q = w.declare(visibility_timeout=10)
    put(q, w.now, "a", "b", "c", "d")
    mine = q.fetch(A, 2, w.now)
    theirs = q.fetch(B, 1, w.now)
    q.change_visibility(A, [mine[0].delivery_id], w.now, 50)
    assert q.purge_held(A, w.now) == 2
    assert q.purge_held(A, w.now) == 0
    s = q.statistics()
    assert (s.in_flight, s.ready, s.purged) == (1, 1, 2)
    with pytest.raises(UnknownDelivery):
        q.ack(A, ids(mine), w.now)
    w.advance(60)  # nothing of A's comes back; B's message does
    assert bodies(q.fetch(A, 10, w.now)) == [b"c", b"d"]
    assert bodies(theirs) == [b"c"]
    check_conservation(q)


def test_a_group_in_flight_blocks_its_later_messages(w: World) -> None:
    q = w.declare(visibility_timeout=10)
    q.put([In(b"a1"), In(b"a2")], w.now, group="a")
    q.put([In(b"b1")], w.now, group="b")
    q.put([In(b"a3")], w.now, group="a")
    put(q, w.now, "free")
    first = q.fetch(A, 1, w.now)
    assert bodies(first) == [b"a1"]
    # Group a is held: the next fetch steps over a2 and a3, in order.
    assert bodies(q.fetch(B, 10, w.now)) == [b"b1", b"free"]
    assert q.fetch(B, 10, w.now) == []
    q.ack(A, ids(first), w.now)
    # One fetch may take several messages of a free group, in order.
    assert bodies(q.fetch(B, 10, w.now)) == [b"a2", b"a3"]
    check_conservation(q)


def test_a_group_comes_back_in_order_after_a_timeout(w: World) -> None:
    q = w.declare(visibility_timeout=10)
    q.put([In(b"1"), In(b"2"), In(b"3")], w.now, group="g")
    assert bodies(q.fetch(A, 2, w.now)) == [b"1", b"2"]
    w.advance(10)
    assert bodies(q.fetch(B, 10, w.now)) == [b"1", b"2", b"3"]


def test_an_ack_that_frees_a_group_feeds_a_parked_fetch(w: World) -> None:
    q = w.declare()
    q.put([In(b"1"), In(b"2")], w.now, group="g")
    first = q.fetch(A, 1, w.now)
    waiting = _Recorder(9)
    q.wait(waiting, 1, 10, w.now, timeout=20)
    assert waiting.resolved == {}
    q.ack(A, ids(first), w.now)
    assert waiting.resolved == {1: [b"2"]}


def test_nack_to_the_front_keeps_the_group_order(w: World) -> None:
    q = w.declare()
    q.put([In(b"1"), In(b"2")], w.now, group="g")
    first = q.fetch(A, 1, w.now)
    waiting = _Recorder(9)
    q.wait(waiting, 1, 1, w.now, timeout=20)
    q.nack(A, ids(first), w.now)
    assert waiting.resolved == {1: [b"1"]}


def test_purge_held_and_disconnect_free_groups(w: World) -> None:
    q = w.declare()
    q.put([In(b"1"), In(b"2"), In(b"3")], w.now, group="g")
    q.fetch(A, 1, w.now)
    q.purge_held(A, w.now)
    got = q.fetch(B, 1, w.now)
    assert bodies(got) == [b"2"]
    q.disconnect(B.conn_id, w.now)
    assert bodies(q.fetch(A, 10, w.now)) == [b"2", b"3"]


def test_put_refuses_a_bad_group(w: World) -> None:
    q = w.declare()
    with pytest.raises(BadRequest):
        q.put([In(b"x")], w.now, group="")


def test_reconfigure_changes_what_comes_next(w: World) -> None:
    q = w.declare(visibility_timeout=10)
    w.declare("dead")
    put(q, w.now, "a")
    q.fetch(A, 1, w.now)
    options = QueueOptions(visibility_timeout=60, max_deliveries=1, dead_letter_queue="dead")
    assert w.queues.reconfigure("q", options, w.now) is True
    assert w.queues.reconfigure("q", options, w.now) is False
    assert q.options == options
    w.advance(10)  # the running fetch keeps its deadline; max_deliveries applies now
    assert q.statistics().dead_lettered == 1
    put(q, w.now, "b")
    q.fetch(A, 1, w.now)
    w.advance(59)
    assert q.statistics().in_flight == 1  # the new visibility timeout


def test_reconfigure_checks_options_and_keeps_durability(w: World) -> None:
    w.declare()
    with pytest.raises(BadRequest):
        w.queues.reconfigure("q", QueueOptions(visibility_timeout=0), w.now)
    with pytest.raises(BadRequest):
        w.queues.reconfigure("q", QueueOptions(durable=True), w.now)
    assert w.queues.get("q").options == QueueOptions()


def test_reconfigured_options_survive_a_restart(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.declare(visibility_timeout=5)
    site.queues.reconfigure("q", QueueOptions(visibility_timeout=90, durable=True), site.now)
    site.restart()
    assert site.queues.get("q").options == QueueOptions(visibility_timeout=90, durable=True)
    site.broker.close()


def test_restore_groups_gives_recovered_messages_their_groups_back(tmp_path: Path) -> None:
    site = Site(tmp_path)
    q = site.declare()
    for body, group in [(b"a1", "a"), (b"a2", "a"), (b"b1", "b"), (b"free", None)]:
        headers = {"g": group} if group else None
        q.put([In(body, headers)], site.now, group=group)
    site.restart()
    q = site.queues.get("q")
    restored = q.restore_groups(lambda m: (m.headers or {}).get("g"))
    assert restored == 3
    assert bodies(q.fetch(A, 1, site.now)) == [b"a1"]
    # Group a is held again, as before the restart: a2 waits for a1.
    assert bodies(q.fetch(B, 10, site.now)) == [b"b1", b"free"]
    check_conservation(q)
    site.broker.close()


class _Recorder:
    def __init__(self, conn_id: int) -> None:
        self.conn_id = conn_id
        self.resolved: dict[int, list[bytes]] = {}

    def resolve(self, token: int, result: object) -> None:
        assert isinstance(result, list)
        self.resolved[token] = [m.body for m in result]

    def reject(self, token: int, error: object) -> None:
        raise AssertionError(error)

    def push_ready(self, source: object) -> None:
        raise AssertionError

    def kick(self, error: object) -> None:
        raise AssertionError
