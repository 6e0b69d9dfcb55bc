"""Unit tests of the queue model (minibroker.core.queues), driven directly: no protocol, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig, Limits
from minibroker.core.dead_letters import dead_letter_headers
from minibroker.core.queue_message import DELIVERY_OVERHEAD, Message, delivery_size
from minibroker.core.queues import MAX_DEAD_LETTER_HOPS, Queue, QueueOptions, Queues
from minibroker.errors import (
    BadRequest,
    BrokerError,
    Conflict,
    InvalidName,
    NotFound,
    Overflow,
    TooLarge,
    UnknownDelivery,
)


@dataclass
class In:
    body: bytes
    headers: dict[str, str] | None = None


def view(m: Message) -> dict[str, Any]:
    return {
        "id": m.delivery_id,
        "body": m.body,
        "count": m.delivery_count,
        "headers": m.headers,
        "published_at": m.published_at,
    }


class FakePeer:
    """Records what the core tells a connection."""

    def __init__(self, conn_id: int) -> None:
        self._conn_id = conn_id
        self.resolved: dict[int, list[dict[str, Any]]] = {}
        self.rejected: dict[int, BrokerError] = {}

    @property
    def conn_id(self) -> int:
        return self._conn_id

    def resolve(self, token: int, result: object) -> None:
        assert token not in self.resolved and token not in self.rejected
        assert isinstance(result, list)
        self.resolved[token] = [view(m) for m in result]  # snapshot: objects are live

    def reject(self, token: int, error: BrokerError) -> None:
        assert token not in self.resolved and token not in self.rejected
        self.rejected[token] = error

    def push_ready(self, source: object) -> None:
        raise AssertionError("queues never push")

    def kick(self, error: BrokerError) -> None:
        raise AssertionError("queues never kick")


class World:
    """A broker, a namespace, a clock."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.broker = Broker(CoreConfig(limits=limits or Limits()))
        self.ns = self.broker.namespace("t")
        self.queues: Queues = self.ns.queues
        self.now = 100.0

    def declare(self, name: str = "q", **options: Any) -> Queue:
        self.queues.declare(name, QueueOptions(**options), self.now)
        return self.queues.get(name)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.broker.on_time(self.now)


def bodies(messages: list[Message]) -> list[bytes]:
    return [m.body for m in messages]


def put(q: Queue, now: float, *names: str) -> None:
    q.put([In(n.encode()) for n in names], now)


def ids(messages: list[Message]) -> list[int]:
    return [m.delivery_id for m in messages]


@pytest.fixture
def w() -> World:
    return World()


A = FakePeer(1)
B = FakePeer(2)


def check_conservation(q: Queue) -> None:
    s = q.statistics()
    assert s.published == (
        s.acked + s.dead_lettered + s.dropped + s.purged + s.ready + s.in_flight + s.delayed
    )


# ----------------------------------------------------------------- basics


def test_put_fetch_ack_fifo(w: World) -> None:
    q = w.declare()
    put(q, w.now, "a", "b", "c")
    got = q.fetch(A, 2, w.now)
    assert bodies(got) == [b"a", b"b"]
    assert [m.delivery_count for m in got] == [1, 1]
    assert got[0].published_at == w.broker.clock.wall_ms(w.now)
    assert q.ack(A, ids(got), w.now) == 2
    assert bodies(q.fetch(A, 10, w.now)) == [b"c"]
    s = q.statistics()
    assert (s.ready, s.in_flight, s.published, s.delivered, s.acked) == (0, 1, 3, 3, 2)
    check_conservation(q)


def test_fetch_empty_and_headers(w: World) -> None:
    q = w.declare()
    assert q.fetch(A, 5, w.now) == []
    q.put([In(b"x", {"k": "v"}), In(b"y", {})], w.now)
    got = q.fetch(A, 5, w.now)
    assert [m.headers for m in got] == [{"k": "v"}, None]


def test_fetch_stops_at_max_bytes_and_leaves_the_rest_ready(w: World) -> None:
    q = w.declare()
    put(q, w.now, "a" * 100, "b" * 100, "c" * 100)
    one = delivery_size(q.inspect(1).ready[0])
    got = q.fetch(A, 10, w.now, max_bytes=2 * one + one // 2)
    assert bodies(got) == [b"a" * 100, b"b" * 100]
    assert bodies(q.fetch(A, 10, w.now, max_bytes=2 * one)) == [b"c" * 100]
    check_conservation(q)


def test_fetch_delivers_a_first_message_bigger_than_max_bytes(w: World) -> None:
    # It could never go otherwise; that it fits a frame is bounded on input.
    q = w.declare()
    q.put([In(b"x" * 500, {"k": "v" * 50}), In(b"y")], w.now)
    assert bodies(q.fetch(A, 10, w.now, max_bytes=10)) == [b"x" * 500]
    assert bodies(q.fetch(A, 10, w.now, max_bytes=10)) == [b"y"]


def test_fetch_never_takes_a_message_no_delivery_frame_can_carry(w: World) -> None:
    """Only a restart with a smaller frame limit leaves such a message (put refuses it)."""
    dlq = w.declare("dead")
    q = w.declare("q", dead_letter_queue="dead")
    put(q, w.now, "x" * 500, "next")
    w.broker.config = CoreConfig(limits=Limits(max_item_bytes=400))
    assert bodies(q.fetch(A, 10, w.now, max_bytes=400)) == [b"next"]
    s = q.statistics()
    assert (s.in_flight, s.dropped, s.dead_lettered) == (1, 1, 0)  # too big for "dead" too
    assert dlq.statistics().published == 0
    check_conservation(q)
    w.broker.config = CoreConfig()
    put(q, w.now, "y" * 500, "last")
    w.broker.config = CoreConfig(limits=Limits(max_item_bytes=400))
    assert bodies(q.fetch(A, 10, w.now)) == [b"last"]  # without a batch budget too
    assert q.statistics().dropped == 2


def test_a_dead_letter_too_big_for_a_delivery_is_dropped(w: World) -> None:
    w.declare("dead")
    q = w.declare("q", dead_letter_queue="dead")
    q.put([In(b"x" * 190)], w.now)
    # A smaller frame limit since (a restart): it still fits, its dead letter not.
    w.broker.config = CoreConfig(limits=Limits(max_item_bytes=DELIVERY_OVERHEAD + 200))
    (d,) = q.fetch(A, 1, w.now)
    q.nack(A, [d.delivery_id], w.now, requeue=False)
    assert (q.statistics().dropped, w.queues.get("dead").statistics().published) == (1, 0)


def test_expired_messages_do_not_count_against_max_bytes(w: World) -> None:
    q = w.declare(message_ttl=5.0)
    put(q, w.now, "old" * 100)
    w.now += 6.0  # expired, but its timer has not fired yet
    put(q, w.now, "new1", "new2")
    got = q.fetch(A, 10, w.now, max_bytes=2 * delivery_size(Message(b"new1", None, 0)))
    assert bodies(got) == [b"new1", b"new2"]
    assert q.statistics().expired == 1


def test_a_parked_fetch_is_answered_within_its_max_bytes(w: World) -> None:
    q = w.declare()
    peer = FakePeer(3)
    budget = 3 * delivery_size(Message(b"m00", None, 0))
    q.wait(peer, 1, 100, w.now, 30.0, max_bytes=budget)
    put(q, w.now, *(f"m{i:02}" for i in range(10)))
    assert [v["body"] for v in peer.resolved[1]] == [b"m00", b"m01", b"m02"]
    assert q.statistics().ready == 7


def test_delivery_size_counts_non_ascii_headers_by_their_utf8_bytes() -> None:
    ascii_only = delivery_size(Message(b"", {"k": "v"}, 0))
    assert delivery_size(Message(b"", {"k": "\u00e9"}, 0)) == ascii_only + 1
    assert delivery_size(Message(b"abc", None, 0)) == DELIVERY_OVERHEAD + 3


def test_delivery_ids_unique_across_queues(w: World) -> None:
    q1, q2 = w.declare("one"), w.declare("two")
    put(q1, w.now, "a")
    put(q2, w.now, "b")
    (m1,) = q1.fetch(A, 1, w.now)
    (m2,) = q2.fetch(A, 1, w.now)
    assert m1.delivery_id != m2.delivery_id
    with pytest.raises(UnknownDelivery):
        q1.ack(A, [m2.delivery_id], w.now)


# ------------------------------------------------------- declare / delete


def test_declare_idempotent_and_conflict(w: World) -> None:
    assert w.queues.declare("q", QueueOptions(max_length=5), w.now) is True
    assert w.queues.declare("q", QueueOptions(max_length=5), w.now) is False
    with pytest.raises(Conflict, match="max_length=5"):
        w.queues.declare("q", QueueOptions(max_length=6), w.now)


@pytest.mark.parametrize(
    "options",
    [
        {"max_length": -1},
        {"max_length": 2**60},
        {"overflow": "drop_tail"},
        {"message_ttl": 1e-6},
        {"message_ttl": -5.0},
        {"message_ttl": float("nan")},
        {"visibility_timeout": 0.0},
        {"visibility_timeout": float("inf")},
        {"visibility_timeout": 10**9},
        {"max_deliveries": 0},
        {"max_deliveries": 1.5},
        {"dead_letter_queue": "q"},
    ],
)
def test_declare_rejects_bad_options(w: World, options: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        w.queues.declare("q", QueueOptions(**options), w.now)
    assert "q" not in w.queues


@pytest.mark.parametrize("name", ["", "a b", "a*", "x" * 300])
def test_declare_rejects_bad_names(w: World, name: str) -> None:
    with pytest.raises(InvalidName):
        w.queues.declare(name, QueueOptions(), w.now)
    with pytest.raises(InvalidName):
        w.queues.declare("ok", QueueOptions(dead_letter_queue=name), w.now)


def test_unknown_queue(w: World) -> None:
    with pytest.raises(NotFound):
        w.queues.get("nope")
    with pytest.raises(NotFound):
        w.queues.delete("nope", w.now)


def test_delete_fails_waiters_and_forgets_deliveries(w: World) -> None:
    q = w.declare()
    deleted: list[str] = []
    w.queues.on_delete.append(deleted.append)
    peer = FakePeer(7)
    q.wait(peer, 1, 5, w.now, 10.0)
    put(w.declare("other"), w.now, "x")
    put(q, w.now, "a", "b")  # feeds the waiter
    put(q, w.now, "c")
    assert [d["body"] for d in peer.resolved[1]] == [b"a", b"b"]
    q.wait(peer, 2, 5, w.now, 10.0)  # something is ready: fed at once
    assert [d["body"] for d in peer.resolved[2]] == [b"c"]
    q.wait(peer, 3, 5, w.now, 10.0)
    assert w.queues.delete("q", w.now) == 3
    assert isinstance(peer.rejected[3], NotFound)
    assert deleted == ["q"]
    assert "q" not in w.queues
    w.advance(100)  # no timer of the deleted queue does anything
    assert 3 not in peer.resolved


# ------------------------------------------------------------- ack, nack


def test_ack_validates_whole_batch_first(w: World) -> None:
    q = w.declare()
    put(q, w.now, "a", "b")
    got = q.fetch(A, 2, w.now)
    good = got[0].delivery_id
    with pytest.raises(UnknownDelivery) as info:
        q.ack(A, [good, 999_999], w.now)
    assert info.value.details["deliveries"] == [999_999]
    assert "999999" in info.value.message
    assert q.statistics().in_flight == 2  # nothing changed
    with pytest.raises(UnknownDelivery):
        q.ack(B, [good], w.now)  # someone else's
    with pytest.raises(UnknownDelivery):
        q.nack(B, [good], w.now)
    assert q.ack(A, [good, good], w.now) == 1  # repeated id counts once
    with pytest.raises(UnknownDelivery):
        q.ack(A, [good], w.now)  # already acked
    assert q.statistics().acked == 1


def test_nack_requeues_at_front_in_order(w: World) -> None:
    q = w.declare()
    put(q, w.now, "a", "b", "c", "d")
    got = q.fetch(A, 2, w.now)
    assert q.nack(A, ids(got), w.now) == 2
    again = q.fetch(A, 10, w.now)
    assert bodies(again) == [b"a", b"b", b"c", b"d"]
    assert [m.delivery_count for m in again] == [2, 2, 1, 1]
    s = q.statistics()
    assert (s.requeued, s.redelivered, s.delivered) == (2, 2, 6)


def test_nack_with_delay(w: World) -> None:
    q = w.declare()
    put(q, w.now, "a", "b")
    (a,) = q.fetch(A, 1, w.now)
    q.nack(A, [a.delivery_id], w.now, delay=5.0)
    assert q.statistics().delayed == 1
    assert bodies(q.fetch(B, 10, w.now)) == [b"b"]
    w.advance(4.9)
    assert q.fetch(B, 10, w.now) == []
    peer = FakePeer(9)
    q.wait(peer, 1, 10, w.now, 30.0)
    w.advance(0.2)
    assert [(d["body"], d["count"]) for d in peer.resolved[1]] == [(b"a", 2)]
    assert q.statistics().delayed == 0
    check_conservation(q)


def test_nack_bad_delay(w: World) -> None:
    q = w.declare()
    put(q, w.now, "a")
    (a,) = q.fetch(A, 1, w.now)
    for delay in (-1.0, float("nan"), 10.0**9):
        with pytest.raises(BadRequest):
            q.nack(A, [a.delivery_id], w.now, delay=delay)
    assert q.statistics().in_flight == 1


def test_nack_without_requeue_dead_letters(w: World) -> None:
    dlq = w.declare("dead")
    q = w.declare("q", dead_letter_queue="dead")
    q.put([In(b"a", {"keep": "me"})], w.now)
    (a,) = q.fetch(A, 1, w.now)
    published_at = a.published_at
    q.nack(A, [a.delivery_id], w.now, requeue=False)
    (d,) = dlq.fetch(A, 1, w.now)
    assert d.body == b"a"
    assert d.headers == {
        "keep": "me",
        "x-death-reason": "rejected",
        "x-death-queue": "q",
        "x-death-count": "1",
        "x-death-hops": "1",
    }
    assert d.published_at == published_at
    assert d.delivery_count == 1
    assert q.statistics().dead_lettered == 1
    assert dlq.statistics().published == 1
    check_conservation(q)


def test_dead_letter_queue_missing_means_dropped(w: World) -> None:
    q = w.declare("q", dead_letter_queue="later")
    put(q, w.now, "a")
    (a,) = q.fetch(A, 1, w.now)
    q.nack(A, [a.delivery_id], w.now, requeue=False)
    s = q.statistics()
    assert (s.dropped, s.dead_lettered) == (1, 0)
    check_conservation(q)


# ---------------------------------------------------- visibility timeout


def test_visibility_timeout_redelivers_with_count(w: World) -> None:
    q = w.declare(visibility_timeout=10.0)
    put(q, w.now, "a", "b", "c")
    got = q.fetch(A, 2, w.now)
    stale = ids(got)
    w.advance(9.9)
    assert q.fetch(B, 10, w.now)[0].body == b"c"
    w.advance(0.1)
    again = q.fetch(B, 10, w.now)
    assert bodies(again) == [b"a", b"b"]
    assert [m.delivery_count for m in again] == [2, 2]
    with pytest.raises(UnknownDelivery):
        q.ack(A, stale, w.now)  # expired ids
    assert q.ack(B, ids(again), w.now) == 2


def test_fetch_overrides_visibility_timeout(w: World) -> None:
    q = w.declare(visibility_timeout=10.0)
    put(q, w.now, "a")
    q.fetch(A, 1, w.now, visibility_timeout=1.0)
    w.advance(1.0)
    assert q.fetch(B, 1, w.now)[0].delivery_count == 2
    with pytest.raises(BadRequest):
        q.fetch(A, 1, w.now, visibility_timeout=0.0)


def test_one_timer_per_fetch_not_per_message(w: World) -> None:
    q = w.declare()
    put(q, w.now, *[str(i) for i in range(1000)])
    before = len(w.broker.timers)
    got = q.fetch(A, 1000, w.now)
    assert len(w.broker.timers) == before + 1
    q.ack(A, ids(got), w.now)
    assert len(w.broker.timers) == before  # acking the last one disarms it


def test_partial_ack_then_timeout_returns_only_the_rest(w: World) -> None:
    q = w.declare(visibility_timeout=5.0)
    put(q, w.now, "a", "b", "c")
    got = q.fetch(A, 3, w.now)
    q.ack(A, [got[1].delivery_id], w.now)
    w.advance(5)
    assert bodies(q.fetch(A, 10, w.now)) == [b"a", b"c"]


def test_max_deliveries_dead_letters_with_headers(w: World) -> None:
    dlq = w.declare("dead")
    q = w.declare("q", visibility_timeout=1.0, max_deliveries=2, dead_letter_queue="dead")
    put(q, w.now, "a")
    q.fetch(A, 1, w.now)
    w.advance(1)
    (again,) = q.fetch(A, 1, w.now)
    assert again.delivery_count == 2
    w.advance(1)
    assert q.fetch(A, 1, w.now) == []
    (d,) = dlq.fetch(A, 1, w.now)
    assert d.headers == {
        "x-death-reason": "max_deliveries",
        "x-death-queue": "q",
        "x-death-count": "2",
        "x-death-hops": "1",
        "x-death-path": "q",
    }
    s = q.statistics()
    assert (s.dead_lettered, s.requeued, s.delivered) == (1, 1, 2)


def test_max_deliveries_applies_to_nack_and_disconnect(w: World) -> None:
    q = w.declare("q", max_deliveries=1)
    put(q, w.now, "a", "b", "c")
    got = q.fetch(A, 2, w.now)
    q.nack(A, [got[0].delivery_id], w.now, delay=3.0)
    w.queues.disconnect(A, w.now)
    s = q.statistics()
    assert (s.dropped, s.ready, s.delayed) == (2, 1, 0)
    check_conservation(q)


# ----------------------------------------------------------- disconnect


def test_disconnect_requeues_at_front_in_delivery_order(w: World) -> None:
    q = w.declare()
    put(q, w.now, "a", "b", "c", "d", "e")
    first = q.fetch(A, 2, w.now)  # a b
    c = q.fetch(B, 1, w.now)  # c
    q.fetch(A, 1, w.now)  # d
    q.ack(A, [first[0].delivery_id], w.now)
    w.queues.disconnect(A, w.now)
    assert q.statistics().consumers == 1
    got = q.fetch(B, 10, w.now)
    assert bodies(got) == [b"b", b"d", b"e"]
    assert [m.delivery_count for m in got] == [2, 2, 1]
    q.ack(B, ids(got) + ids(c), w.now)
    w.advance(1000)  # A's leases' timers were disarmed: nothing more comes back
    assert q.fetch(B, 10, w.now) == []


def test_disconnect_drops_waiters(w: World) -> None:
    q = w.declare()
    peer = FakePeer(5)
    q.wait(peer, 1, 1, w.now, 10.0)
    assert q.statistics().consumers == 1
    w.queues.disconnect(peer, w.now)
    assert q.statistics().waiting_fetches == 0
    put(q, w.now, "a")
    assert peer.resolved == {}
    assert q.statistics().ready == 1


# ----------------------------------------------------------- long polls


def test_cancel_wait_answers_the_parked_fetch_empty_and_delivers_nothing_to_it(
    w: World,
) -> None:
    q = w.declare(max_deliveries=2)
    peer = FakePeer(21)
    q.wait(peer, 7, 5, w.now, 30.0)
    assert q.cancel_wait(peer, 7, w.now) is True
    assert peer.resolved == {7: []}
    assert q.statistics().waiting_fetches == 0
    put(q, w.now, "a")  # no longer fed to the withdrawn fetch
    (a,) = q.fetch(B, 1, w.now)
    assert (a.body, a.delivery_count) == (b"a", 1)
    w.advance(60)  # its wait timer was disarmed: no second answer (FakePeer asserts)
    assert q.cancel_wait(peer, 7, w.now) is False


def test_cancel_wait_after_the_fetch_was_answered_changes_nothing(w: World) -> None:
    q = w.declare()
    peer = FakePeer(22)
    q.wait(peer, 1, 5, w.now, 30.0)
    put(q, w.now, "a")
    assert [d["body"] for d in peer.resolved[1]] == [b"a"]
    assert q.cancel_wait(peer, 1, w.now) is False
    # The delivery stays with the peer, to ack or nack (the client nacks it).
    s = q.statistics()
    assert (s.in_flight, s.ready, s.waiting_fetches) == (1, 0, 0)


def test_cancel_wait_of_an_unknown_or_foreign_fetch_is_false(w: World) -> None:
    q = w.declare()
    other = w.declare("other")
    owner, stranger = FakePeer(23), FakePeer(24)
    q.wait(owner, 1, 1, w.now, 30.0)
    assert q.cancel_wait(stranger, 1, w.now) is False  # same token, another connection
    assert q.cancel_wait(owner, 2, w.now) is False  # no such fetch
    assert other.cancel_wait(owner, 1, w.now) is False  # parked on another queue
    assert owner.resolved == {} and stranger.resolved == {}
    put(q, w.now, "a")  # the fetch is still parked, and served as before
    assert [d["body"] for d in owner.resolved[1]] == [b"a"]


def test_waiters_are_fed_first_come_first_served(w: World) -> None:
    q = w.declare()
    p1, p2, p3 = FakePeer(11), FakePeer(12), FakePeer(13)
    q.wait(p1, 1, 2, w.now, 10.0)
    q.wait(p2, 1, 2, w.now, 10.0)
    q.wait(p3, 1, 2, w.now, 5.0)
    assert q.statistics().waiting_fetches == 3
    put(q, w.now, "a", "b", "c")
    assert [d["body"] for d in p1.resolved[1]] == [b"a", b"b"]
    assert [d["body"] for d in p2.resolved[1]] == [b"c"]
    assert p3.resolved == {}
    w.advance(5)
    assert p3.resolved == {1: []}
    assert q.statistics().waiting_fetches == 0
    w.advance(10)  # the fed waiters' timers were disarmed


def test_wait_validates(w: World) -> None:
    q = w.declare()
    for bad in (0.0, -1.0, 10.0**9):
        with pytest.raises(BadRequest):
            q.wait(A, 1, 1, w.now, bad)
    for bad_n in (0, -1, 10**9):
        with pytest.raises(BadRequest):
            q.fetch(A, bad_n, w.now)


def test_requeue_wakes_waiter(w: World) -> None:
    q = w.declare()
    put(q, w.now, "a")
    (a,) = q.fetch(A, 1, w.now)
    peer = FakePeer(3)
    q.wait(peer, 1, 1, w.now, 10.0)
    q.nack(A, [a.delivery_id], w.now)
    assert peer.resolved[1][0]["body"] == b"a"
    assert peer.resolved[1][0]["count"] == 2


# -------------------------------------------------------------------- TTL


def test_ttl_expires_without_fetch_and_dead_letters(w: World) -> None:
    dlq = w.declare("dead")
    q = w.declare("q", message_ttl=10.0, dead_letter_queue="dead")
    put(q, w.now, "a")
    w.advance(5)
    put(q, w.now, "b")
    w.advance(5)  # a expires on its own timer
    assert q.statistics().ready == 1
    (d,) = dlq.fetch(A, 1, w.now)
    assert d.headers == {
        "x-death-reason": "expired",
        "x-death-queue": "q",
        "x-death-count": "0",
        "x-death-hops": "1",
        "x-death-path": "q",
    }
    w.advance(5)
    s = q.statistics()
    assert (s.expired, s.dead_lettered, s.ready) == (2, 2, 0)
    check_conservation(q)


def test_ttl_zero_expires_on_arrival_and_dead_letters_at_once(w: World) -> None:
    """message_ttl=0 is RabbitMQ's "now or never": nobody waiting, so it is gone
    at the instant of the put, without a timer or a later fetch."""
    dlq = w.declare("dead")
    q = w.declare("q", message_ttl=0, dead_letter_queue="dead")
    put(q, w.now, "a", "b")
    s = q.statistics()
    assert (s.ready, s.expired, s.dead_lettered) == (0, 2, 2)
    assert q.fetch(A, 10, w.now) == []  # not even at the same instant
    assert bodies(dlq.fetch(A, 10, w.now)) == [b"a", b"b"]
    check_conservation(q)


def test_ttl_zero_reaches_a_consumer_waiting_at_once(w: World) -> None:
    q = w.declare("q", message_ttl=0)
    peer = FakePeer(7)
    q.wait(peer, 1, 1, w.now, timeout=5.0)  # a long-poll fetch is parked
    put(q, w.now, "a", "b")
    assert [m["body"] for m in peer.resolved[1]] == [b"a"]  # it asked for one
    s = q.statistics()
    assert (s.ready, s.in_flight, s.expired) == (0, 1, 1)


def test_ttl_zero_reaches_a_ready_listener_at_once(w: World) -> None:
    q = w.declare("q", message_ttl=0)
    taken: list[bytes] = []

    def listener(queue: Queue, now: float) -> None:
        taken.extend(bodies(queue.fetch(B, 1, now)))

    q.ready_listeners.append(listener)
    put(q, w.now, "a")
    assert taken == [b"a"]
    assert q.statistics().expired == 0


def test_ttl_zero_survives_a_round_trip_of_its_options() -> None:
    options = QueueOptions(message_ttl=0, durable=True)
    assert QueueOptions.from_dict(options.to_dict()).message_ttl == 0


def test_ttl_never_delivers_expired_and_drops_without_dlq(w: World) -> None:
    q = w.declare(message_ttl=10.0)
    put(q, w.now, "a")
    w.now += 20  # time passes but the timer has not run yet
    assert q.fetch(A, 5, w.now) == []
    s = q.statistics()
    assert (s.expired, s.dropped) == (1, 1)


def test_ttl_does_not_expire_in_flight_but_on_return(w: World) -> None:
    q = w.declare(message_ttl=10.0, visibility_timeout=30.0)
    put(q, w.now, "a")
    (a,) = q.fetch(A, 1, w.now)
    w.advance(20)
    assert q.statistics().in_flight == 1
    assert q.ack(A, [a.delivery_id], w.now) == 1  # still acknowledgeable
    put(q, w.now, "b")
    q.fetch(A, 1, w.now)
    w.advance(30)  # returned after its expiry: expires at the head
    s = q.statistics()
    assert (s.expired, s.ready) == (1, 0)


def test_ttl_after_requeue_to_front(w: World) -> None:
    q = w.declare(message_ttl=10.0)
    put(q, w.now, "a")
    (a,) = q.fetch(A, 1, w.now)
    w.advance(3)
    put(q, w.now, "b")  # expires at +13
    w.advance(3)
    q.nack(A, [a.delivery_id], w.now)  # a goes in front, expires at +10
    w.advance(4)
    assert bodies(q.fetch(A, 5, w.now)) == [b"b"]
    assert q.statistics().expired == 1


# -------------------------------------------------------------- overflow


def test_reject_publish_is_all_or_nothing(w: World) -> None:
    q = w.declare(max_length=3)
    put(q, w.now, "a", "b")
    with pytest.raises(Overflow) as info:
        put(q, w.now, "c", "d")
    assert info.value.details == {"queue": "q", "max_length": 3, "ready": 2}
    s = q.statistics()
    assert (s.ready, s.published, s.rejected_publishes) == (2, 2, 2)
    q.fetch(A, 2, w.now)  # in-flight messages do not count
    put(q, w.now, "c", "d", "e")
    with pytest.raises(Overflow):
        put(q, w.now, "f")


def test_drop_head_drops_oldest_ready(w: World) -> None:
    dlq = w.declare("dead")
    q = w.declare("q", max_length=2, overflow="drop_head", dead_letter_queue="dead")
    put(q, w.now, "a", "b")
    (a,) = q.fetch(A, 1, w.now)
    put(q, w.now, "c", "d", "e")
    assert bodies(q.fetch(B, 5, w.now)) == [b"d", b"e"]
    dead = dlq.fetch(A, 5, w.now)
    assert bodies(dead) == [b"b", b"c"]
    assert dead[0].headers is not None and dead[0].headers["x-death-reason"] == "overflow"
    assert q.statistics().dead_lettered == 2
    q.nack(A, [a.delivery_id], w.now)  # requeues are never refused
    assert q.statistics().ready == 1
    check_conservation(q)


def test_drop_head_without_dlq_counts_dropped(w: World) -> None:
    q = w.declare(max_length=0, overflow="drop_head")
    put(q, w.now, "a", "b")
    s = q.statistics()
    assert (s.ready, s.dropped, s.published) == (0, 2, 2)


def test_drop_head_feeds_waiters_before_dropping(w: World) -> None:
    q = w.declare(max_length=1, overflow="drop_head")
    peer = FakePeer(4)
    q.wait(peer, 1, 2, w.now, 5.0)
    put(q, w.now, "a", "b", "c", "d")
    assert [d["body"] for d in peer.resolved[1]] == [b"a", b"b"]
    assert bodies(q.fetch(A, 5, w.now)) == [b"d"]


def test_full_dead_letter_queue_refuses_and_source_drops(w: World) -> None:
    dlq = w.declare("dead", max_length=1)
    q = w.declare("q", dead_letter_queue="dead")
    put(q, w.now, "a", "b")
    got = q.fetch(A, 2, w.now)
    q.nack(A, ids(got), w.now, requeue=False)  # 2 do not fit in 1: all refused
    assert (q.statistics().dropped, dlq.statistics().rejected_publishes) == (2, 2)


def test_dead_letter_cycle_terminates(w: World) -> None:
    a = w.declare("a", max_length=1, overflow="drop_head", dead_letter_queue="b")
    w.declare("b", max_length=1, overflow="drop_head", dead_letter_queue="a")
    put(a, w.now, "1")
    put(w.queues.get("b"), w.now, "2")
    put(a, w.now, "3")  # would bounce between a and b forever without the hop limit
    total_ready = a.statistics().ready + w.queues.get("b").statistics().ready
    assert total_ready == 2
    dropped = a.statistics().dropped + w.queues.get("b").statistics().dropped
    assert dropped == 1
    assert MAX_DEAD_LETTER_HOPS >= 2


def test_an_expiry_cycle_takes_a_message_round_once_then_drops_it(w: World) -> None:
    """A <-> B with TTLs bounced a message forever (issue 14 item 2); RabbitMQ's
    rule drops it when it would go back into a queue it died in."""
    a = w.declare("a", message_ttl=0.01, dead_letter_queue="b")
    b = w.declare("b", message_ttl=0.01, dead_letter_queue="a")
    put(a, w.now, "m")
    for _ in range(100):
        w.advance(0.01)
    sa, sb = a.statistics(), b.statistics()
    assert (sa.dead_lettered, sa.dropped, sa.ready) == (1, 0, 0)
    assert (sb.published, sb.dead_lettered, sb.dropped, sb.ready) == (1, 0, 1, 0)
    assert w.broker.next_deadline() is None
    check_conservation(a)


def test_a_rejection_in_the_cycle_keeps_delayed_retries_going(w: World) -> None:
    """The retry pattern: rejected work waits in a TTL queue that dead-letters it back."""
    work = w.declare("work", dead_letter_queue="retry")
    w.declare("retry", message_ttl=5.0, dead_letter_queue="work")
    put(work, w.now, "job")
    for attempt in range(1, 6):
        (d,) = work.fetch(A, 1, w.now)
        work.nack(A, [d.delivery_id], w.now, requeue=False)
        w.advance(5)
        (back,) = work.fetch(A, 1, w.now)
        assert back.headers is not None
        assert back.headers["x-death-reason"] == "expired"
        assert back.headers["x-death-hops"] == str(2 * attempt)
        assert back.headers["x-death-path"] == "retry"
        work.nack(A, [back.delivery_id], w.now)  # requeue for the next round
    assert work.statistics().dropped == 0


def test_a_cycle_through_max_deliveries_is_still_a_cycle(w: World) -> None:
    a = w.declare("a", message_ttl=1.0, dead_letter_queue="b")
    b = w.declare("b", max_deliveries=1, visibility_timeout=1.0, dead_letter_queue="a")
    put(a, w.now, "m")
    w.advance(1)
    (d,) = b.fetch(A, 1, w.now)
    assert d.headers is not None and d.headers["x-death-path"] == "a"
    w.advance(1)  # its visibility timeout: past max_deliveries, back towards a
    assert (b.statistics().dropped, a.statistics().ready) == (1, 0)


def test_a_rejection_empties_the_path(w: World) -> None:
    a = w.declare("a", message_ttl=1.0, dead_letter_queue="b")
    b = w.declare("b", dead_letter_queue="a")
    put(a, w.now, "m")
    w.advance(1)
    (d,) = b.fetch(A, 1, w.now)
    b.nack(A, [d.delivery_id], w.now, requeue=False)
    (again,) = a.fetch(A, 1, w.now)
    assert again.headers is not None
    assert "x-death-path" not in again.headers
    assert (again.headers["x-death-hops"], again.headers["x-death-reason"]) == ("2", "rejected")


def _routing_to(w: World, source: str, *targets: str) -> None:
    """Give ``source`` a front end's dead-letter route (as AMQP's x-dead-letter-exchange):
    each dead letter is put into every target, with the core's dead-letter headers."""

    def route(messages: list[Message], reason: str, now: float) -> bool:
        taken = 0
        for m in messages:
            headers = dead_letter_headers(m.headers, reason, source, m.delivery_count)
            for target in targets:
                taken += w.queues.get(target).put([In(m.body, headers)], now)
        return taken > 0

    w.queues.get(source).dead_letter_route = route


def test_a_cycle_through_a_front_ends_routing_ends_after_one_lap(w: World) -> None:
    """A <-> B through routes with TTLs: the old code bounced the message once
    per TTL forever (it only bounded hops within one operation)."""
    a = w.declare("a", message_ttl=1.0)
    b = w.declare("b", message_ttl=1.0)
    _routing_to(w, "a", "b")
    _routing_to(w, "b", "a")
    put(a, w.now, "m")
    for _ in range(50):  # 25 TTLs of each queue
        w.advance(1)
    sa, sb = a.statistics(), b.statistics()
    assert (sa.published, sa.dead_lettered, sa.dropped, sa.ready) == (1, 1, 0, 0)
    assert (sb.published, sb.dead_lettered, sb.dropped, sb.ready) == (1, 0, 1, 0)
    assert w.broker.next_deadline() is None
    assert w.queues.barred == ()
    check_conservation(a)
    check_conservation(b)


def test_a_route_to_several_queues_skips_only_those_on_the_path(w: World) -> None:
    a = w.declare("a", message_ttl=1.0)
    audit = w.declare("audit")
    _routing_to(w, "a", "a", "audit")
    put(a, w.now, "m")
    for _ in range(10):
        w.advance(1)
    sa = a.statistics()
    assert (sa.published, sa.expired, sa.dead_lettered, sa.dropped) == (1, 1, 1, 0)
    [letter] = audit.inspect(10).ready
    assert letter.headers is not None and letter.headers["x-death-path"] == "a"


def test_a_route_after_a_rejection_may_go_back(w: World) -> None:
    """The retry pattern through routes: each round starts with a rejection."""
    work = w.declare("work")
    retry = w.declare("retry", message_ttl=5.0)
    _routing_to(w, "work", "retry")
    _routing_to(w, "retry", "work")
    put(work, w.now, "job")
    for _ in range(5):
        (d,) = work.fetch(A, 1, w.now)
        work.nack(A, [d.delivery_id], w.now, requeue=False)
        w.advance(5)
    assert (work.ready_count, work.statistics().dropped, retry.statistics().dropped) == (1, 0, 0)


def test_a_put_outside_dead_lettering_is_never_barred(w: World) -> None:
    """Only a dead letter in flight is checked: a client's x-death-path header is
    just a header on a put (it matters once the message dies)."""
    a = w.declare("a")
    a.put([In(b"m", {"x-death-path": "a"})], w.now)
    assert a.ready_count == 1


def test_a_zero_ttl_put_expires_at_once_unless_a_consumer_takes_it(w: World) -> None:
    """AMQP's expiration "0" (RabbitMQ's now or never): a fetch at the same instant
    finds nothing; the old code kept it for one timer pass."""
    w.declare("dead")
    q = w.declare("q", dead_letter_queue="dead")
    q.put([In(b"unclaimed")], w.now, ttl=0)
    assert (q.statistics().expired, q.statistics().dead_lettered) == (1, 1)
    assert q.fetch(A, 1, w.now) == []
    peer = FakePeer(3)
    q.wait(peer, 1, 1, w.now, 5.0)
    q.put([In(b"claimed")], w.now, ttl=0)
    assert [d["body"] for d in peer.resolved[1]] == [b"claimed"]
    assert q.statistics().expired == 1


def test_a_zero_ttl_put_behind_others_waits_for_the_head(w: World) -> None:
    """As in RabbitMQ, expiry looks at the head: behind another message it stays
    until it gets there, and is gone by the next instant."""
    q = w.declare("q")
    put(q, w.now, "first")
    q.put([In(b"now or never")], w.now, ttl=0)
    assert q.ready_count == 2
    w.advance(0.001)
    assert bodies(q.fetch(A, 5, w.now)) == [b"first"]
    assert q.statistics().expired == 1


# ---------------------------------------------------------- purge, limits


def test_purge_keeps_in_flight(w: World) -> None:
    q = w.declare()
    put(q, w.now, "a", "b", "c", "d")
    got = q.fetch(A, 2, w.now)
    q.nack(A, [got[1].delivery_id], w.now, delay=10.0)
    assert q.purge(w.now) == 3  # c, d and the delayed b
    w.advance(20)
    assert q.fetch(A, 5, w.now) == []
    assert q.ack(A, [got[0].delivery_id], w.now) == 1
    s = q.statistics()
    assert (s.purged, s.acked, s.ready, s.delayed) == (3, 1, 0, 0)
    check_conservation(q)


def test_limits() -> None:
    w = World(Limits(max_message_bytes=4, max_batch=3, max_fetch=10))
    q = w.declare()
    with pytest.raises(TooLarge):
        q.put([In(b"ok"), In(b"too long")], w.now)
    with pytest.raises(BadRequest):
        put(q, w.now, "1", "2", "3", "4")
    assert q.statistics().published == 0
    with pytest.raises(BadRequest):
        q.fetch(A, 11, w.now)
    assert q.put([], w.now) == 0


def test_inspect(w: World) -> None:
    q = w.declare(visibility_timeout=7.0)
    put(q, w.now, "a", "b", "c", "d")
    got = q.fetch(A, 2, w.now)
    q.nack(A, [got[1].delivery_id], w.now, delay=3.0)
    contents = q.inspect(10)
    assert bodies(contents.ready) == [b"c", b"d"]
    assert [(h.message.body, h.conn_id, h.deadline) for h in contents.in_flight] == [
        (b"a", 1, w.now + 7.0)
    ]
    assert [(d.message.body, d.until) for d in contents.delayed] == [(b"b", w.now + 3.0)]
    assert bodies(q.inspect(1).ready) == [b"c"]
    with pytest.raises(BadRequest):
        q.inspect(-1)


def test_list_and_namespace_isolation(w: World) -> None:
    w.declare("b")
    w.declare("a", durable=True)  # no storage: accepted, kept in memory
    assert [s.name for s in w.queues.list()] == ["a", "b"]
    assert w.queues.get("a").durable is False
    other = w.broker.namespace("other").queues
    assert len(other) == 0
    w.broker.drop_namespace("t")


def test_ttl_zero_after_a_reconfigure_leaves_older_messages_their_own_ttl(w: World) -> None:
    q = w.declare("q", message_ttl=60.0)
    put(q, w.now, "old")
    w.queues.reconfigure("q", QueueOptions(message_ttl=0), w.now)
    put(q, w.now, "new")
    assert (q.statistics().expired, bodies(q.fetch(A, 10, w.now))) == (1, [b"old"])


def test_ttl_zero_queues_that_dead_letter_to_each_other_end(w: World) -> None:
    """Expiry on arrival recurses through the dead-letter queues within one put:
    the cycle rule ends it (an expiry cycle with no rejection in it is dropped)."""
    a = w.declare("a", message_ttl=0, dead_letter_queue="b")
    b = w.declare("b", message_ttl=0, dead_letter_queue="a")
    put(a, w.now, "m")
    assert (a.ready_count, b.ready_count) == (0, 0)
    assert a.statistics().expired == 1 and b.statistics().expired == 1
