"""A requeued message goes back to its place in publication order, as in RabbitMQ.

RabbitMQ: "a requeued message is placed back at its original position in the
queue if possible". Each return (nack, a fetch's visibility timeout, a
consumer's disconnect, ChangeMessageVisibility 0) used to go to the very
front, so messages returned one at a time came back latest first: reject m3,
m1, m4 and the next fetch gave m4, m1, m3. Now they are merged, by publish
order, into the messages returned before (``minibroker.core.ready.return_in_order``),
on every kind of queue: transient (publish order from the first delivery id,
on the ``Message`` path and the column path alike), durable (the journal's
numbers, also across a restart), with ``max_length_bytes`` or priorities.
Driven directly, no I/O; the property test checks it against a model.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_queues import A, B, FakePeer, In, World, bodies, check_conservation
from test_queues_journal import Site

from minibroker.core.queue_message import FirstDeliveries, Message
from minibroker.core.queues import Queue


class Harness:
    """A queue of one kind, the clock it runs on, and a restart where it has one."""

    def __init__(self, kind: str) -> None:
        self.site: Site | None = None
        self.world: World | None = None
        options: dict[str, Any] = {"visibility_timeout": 10}
        if kind == "durable":
            self.site = Site(None)
            self.q = self.site.declare(**options)
            return
        if kind == "counted":
            options["max_length_bytes"] = 1 << 20
        elif kind == "priority":
            options["max_priority"] = 3
        self.world = World()
        self.q = self.world.declare(**options)
        self.q.columns = kind != "columns_off"

    @property
    def now(self) -> float:
        return self.site.now if self.site is not None else self.world.now  # type: ignore[union-attr]

    def advance(self, seconds: float) -> None:
        (self.site or self.world).advance(seconds)  # type: ignore[union-attr]

    def disconnect(self, peer: FakePeer) -> None:
        queues = self.site.queues if self.site is not None else self.world.queues  # type: ignore[union-attr]
        queues.disconnect(peer, self.now)

    def restart(self) -> bool:
        if self.site is None:
            return False
        self.site.restart()
        self.q = self.site.queues.get("q")
        return True


KINDS = ["transient", "columns_off", "counted", "priority", "durable"]


@pytest.fixture
def w() -> World:
    return World()


def _fetch_all(q: Queue, peer: FakePeer, now: float, compact: bool = False) -> list[Message]:
    got = q.fetch_compact(peer, 100, now, compact=compact)
    return got.messages() if isinstance(got, FirstDeliveries) else got


@pytest.mark.parametrize("kind", KINDS)
def test_rejected_one_at_a_time_they_come_back_in_publication_order(kind: str) -> None:
    h = Harness(kind)
    q = h.q
    q.put([b"m0", b"m1", b"m2", b"m3", b"m4", b"m5"], h.now)
    got = {m.body: m.delivery_id for m in _fetch_all(q, A, h.now, compact=True)}
    for body in (b"m3", b"m1", b"m4"):
        q.nack(A, [got[body]], h.now)
    again = q.fetch(B, 100, h.now)
    assert bodies(again) == [b"m1", b"m3", b"m4"]  # was m4, m1, m3
    assert [m.delivery_count for m in again] == [2, 2, 2]
    check_conservation(q)


def test_returns_go_before_messages_never_delivered_and_after_older_returns(w: World) -> None:
    q = w.declare(visibility_timeout=10)
    q.put([In(b"m%d" % i) for i in range(6)], w.now)
    first = q.fetch(A, 2, w.now)  # m0, m1
    second = q.fetch(B, 2, w.now, visibility_timeout=30)  # m2, m3
    q.nack(B, [second[1].delivery_id], w.now)  # m3
    w.advance(10)  # A's fetch times out: m0, m1
    q.nack(B, [second[0].delivery_id], w.now)  # m2
    assert bodies(q.fetch(A, 100, w.now)) == [b"m0", b"m1", b"m2", b"m3", b"m4", b"m5"]
    assert bodies(first) == [b"m0", b"m1"]
    check_conservation(q)


def test_a_disconnect_and_a_nack_merge(w: World) -> None:
    q = w.declare(visibility_timeout=10)
    q.put([b"m%d" % i for i in range(5)], w.now)
    a = _fetch_all_n(q, A, 2, w.now)  # m0, m1 (as columns)
    b = _fetch_all_n(q, B, 2, w.now)  # m2, m3
    q.nack(B, [b[1]], w.now)  # m3 back first
    w.queues.disconnect(A, w.now)  # then m0, m1
    q.nack(B, [b[0]], w.now)  # then m2
    assert bodies(q.fetch(A, 100, w.now)) == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert len(a) == 2


def _fetch_all_n(q: Queue, peer: FakePeer, n: int, now: float) -> list[int]:
    got = q.fetch_compact(peer, n, now)
    assert isinstance(got, FirstDeliveries)
    return list(range(got.first_id, got.first_id + len(got)))


def test_a_durable_queue_keeps_the_order_across_a_restart() -> None:
    site = Site(None)
    q = site.declare(visibility_timeout=10)
    q.put([b"m0", b"m1", b"m2", b"m3"], site.now)
    got = {m.body: m.delivery_id for m in q.fetch(A, 4, site.now)}
    q.nack(A, [got[b"m2"]], site.now)
    q.nack(A, [got[b"m0"]], site.now)
    site.restart()
    q = site.queues.get("q")
    assert bodies(q.fetch(B, 10, site.now)) == [b"m0", b"m1", b"m2", b"m3"]
    site.broker.close()


def test_priorities_first_then_publication_order_within_one(w: World) -> None:
    q = w.declare(visibility_timeout=10, max_priority=2)
    q.put([b"l0", b"l1"], w.now)
    q.put([b"h0", b"h1"], w.now, priority=2)
    got = {m.body: m.delivery_id for m in q.fetch(A, 4, w.now)}
    for body in (b"h0", b"l0", b"h1", b"l1"):
        q.nack(A, [got[body]], w.now)
    assert bodies(q.fetch(B, 10, w.now)) == [b"h0", b"h1", b"l0", b"l1"]


# --------------------------------------------------------------- property

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(1, 4), st.booleans()),
        st.tuples(st.just("fetch"), st.sampled_from([0, 1]), st.integers(1, 5), st.booleans()),
        st.tuples(st.just("ack"), st.integers(0, 30)),
        st.tuples(st.just("nack"), st.lists(st.integers(0, 30), min_size=1, max_size=3)),
        st.tuples(st.just("visibility"), st.integers(0, 30), st.sampled_from([0, 4])),
        st.tuples(st.just("advance"), st.sampled_from([1, 6, 11])),
        st.tuples(st.just("disconnect"), st.sampled_from([0, 1])),
        st.tuples(st.just("restart")),
    ),
    max_size=50,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KINDS), _ops)
def test_only_requeues_keep_the_ready_order_the_publication_order(
    kind: str, ops: list[tuple[Any, ...]]
) -> None:
    """Model: the numbers (publish order) of the messages ready, and of those
    out: delivery id -> (number, peer, visibility deadline). Whatever was
    returned, and in whatever order, every fetch hands out the oldest ready
    ones, oldest first. The queue is not inspected on the way, so puts and
    compact fetches keep to the column path where the queue has one."""
    h = Harness(kind)
    peers = (A, B)
    serial = 0
    ready: set[int] = set()
    out: dict[int, tuple[int, int, float]] = {}
    for op in ops:
        q, now = h.q, h.now
        if op[0] == "put":
            _, n, bare = op
            batch = [b"%d" % (serial + i) for i in range(n)]
            q.put(batch if bare else [In(b) for b in batch], now)
            ready.update(range(serial, serial + n))
            serial += n
        elif op[0] == "fetch":
            _, who, n, compact = op
            got = _fetch_n(q, peers[who], n, now, compact)
            numbers = [int(m.body) for m in got]
            assert numbers == sorted(ready)[:n]
            ready.difference_update(numbers)
            out.update((m.delivery_id, (int(m.body), who, now + 10)) for m in got)
        elif op[0] in ("ack", "visibility"):
            if not out:
                continue
            delivery_id = sorted(out)[op[1] % len(out)]
            number, who, _ = out[delivery_id]
            if op[0] == "ack":
                assert q.ack(peers[who], [delivery_id], now) == 1
                del out[delivery_id]
            else:
                q.change_visibility(peers[who], [delivery_id], now, op[2])
                if op[2] == 0:
                    del out[delivery_id]
                    ready.add(number)
                else:
                    out[delivery_id] = (number, who, now + op[2])
        elif op[0] == "nack":
            if not out:
                continue
            held = sorted(out)
            picked = {held[i % len(held)] for i in op[1]}
            owners = {d: out[d][1] for d in picked}
            for who in (0, 1):
                mine = [d for d in picked if owners[d] == who]
                if mine:
                    assert q.nack(peers[who], mine, now) == len(mine)
                    for d in mine:
                        ready.add(out.pop(d)[0])
        elif op[0] == "advance":
            h.advance(op[1])
            for d in [d for d, (_, _, deadline) in out.items() if deadline <= h.now]:
                ready.add(out.pop(d)[0])
        elif op[0] == "disconnect":
            h.disconnect(peers[op[1]])
            for d in [d for d, (_, who, _) in out.items() if who == op[1]]:
                ready.add(out.pop(d)[0])
        elif h.restart():
            ready.update(number for number, _, _ in out.values())
            out.clear()
    rest = []
    while got := _fetch_n(h.q, A, 100, h.now, True):
        rest.extend(int(m.body) for m in got)
    assert rest == sorted(ready)
    check_conservation(h.q)


def _fetch_n(q: Queue, peer: FakePeer, n: int, now: float, compact: bool) -> list[Message]:
    got = q.fetch_compact(peer, n, now, compact=compact)
    return got.messages() if isinstance(got, FirstDeliveries) else got
