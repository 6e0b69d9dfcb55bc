"""Message groups stay in publish order when their messages come back one at a time.

Several messages of one group are in flight together only when one fetch
took them (an SQS FIFO ReceiveMessage with MaxNumberOfMessages > 1), and each
can come back on its own: ChangeMessageVisibility to 0 of one receipt
handle, or visibility timeouts changed apart. Each used to go to the front
of the queue as it came back, so the group was delivered again in the order
it came back, not the order it was published (SQS FIFO's promise). Driven
directly, no I/O; the property test checks the promise over random
interleavings against a model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_queues import A, B, In, World, bodies, check_conservation
from test_queues_journal import Site

from minibroker.core.queue_message import Message
from minibroker.core.queues import Queue


@pytest.fixture
def w() -> World:
    return World()


def _by_body(messages: list[Message]) -> dict[bytes, int]:
    return {m.body: m.delivery_id for m in messages}


def test_returned_one_by_one_oldest_first_the_group_keeps_its_order(w: World) -> None:
    q = w.declare(visibility_timeout=30)
    q.put([In(b"a0"), In(b"a1"), In(b"a2")], w.now, group="a")
    got = _by_body(q.fetch(A, 2, w.now))
    q.change_visibility(A, [got[b"a0"]], w.now, 0)
    q.change_visibility(A, [got[b"a1"]], w.now, 0)
    assert bodies(q.fetch(B, 10, w.now)) == [b"a0", b"a1", b"a2"]
    check_conservation(q)


def test_returned_one_by_one_newest_first_the_group_keeps_its_order(w: World) -> None:
    q = w.declare(visibility_timeout=30)
    q.put([In(b"a0"), In(b"a1"), In(b"a2")], w.now, group="a")
    q.put([In(b"b0")], w.now, group="b")
    got = _by_body(q.fetch(A, 2, w.now))
    q.nack(A, [got[b"a1"]], w.now)
    q.nack(A, [got[b"a0"]], w.now)
    assert bodies(q.fetch(B, 10, w.now)) == [b"a0", b"a1", b"a2", b"b0"]
    check_conservation(q)


def test_visibility_timeouts_changed_apart_keep_the_group_order(w: World) -> None:
    q = w.declare(visibility_timeout=30)
    q.put([In(b"a0"), In(b"a1"), In(b"a2")], w.now, group="a")
    got = _by_body(q.fetch(A, 3, w.now))
    q.change_visibility(A, [got[b"a0"]], w.now, 5)
    q.change_visibility(A, [got[b"a1"]], w.now, 10)
    w.advance(5)
    assert q.fetch(B, 10, w.now) == []  # a1 and a2 are still out: the group is held
    w.advance(5)
    q.change_visibility(A, [got[b"a2"]], w.now, 0)
    assert bodies(q.fetch(B, 10, w.now)) == [b"a0", b"a1", b"a2"]
    check_conservation(q)


def test_an_ack_between_returns_ends_the_split(w: World) -> None:
    q = w.declare(visibility_timeout=30)
    q.put([In(b"a0"), In(b"a1"), In(b"a2")], w.now, group="a")
    got = _by_body(q.fetch(A, 3, w.now))
    q.nack(A, [got[b"a2"]], w.now)
    q.ack(A, [got[b"a0"]], w.now)
    q.nack(A, [got[b"a1"]], w.now)
    assert bodies(q.fetch(B, 10, w.now)) == [b"a1", b"a2"]
    check_conservation(q)


def test_a_durable_queue_orders_returns_by_its_journal_numbers(tmp_path: Path) -> None:
    site = Site(tmp_path)
    q = site.declare(visibility_timeout=30)
    q.put([In(b"a0"), In(b"a1")], site.now, group="a")
    got = _by_body(q.fetch(A, 2, site.now))
    q.nack(A, [got[b"a0"]], site.now)
    q.nack(A, [got[b"a1"]], site.now)
    assert bodies(q.fetch(B, 10, site.now)) == [b"a0", b"a1"]
    site.broker.close()


# --------------------------------------------------------------- property

_GROUPS = ("a", "b", "c")

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(_GROUPS), st.integers(1, 3)),
        st.tuples(st.just("fetch"), st.integers(1, 5)),
        st.tuples(st.just("nack"), st.integers(0, 20)),
        st.tuples(st.just("ack"), st.integers(0, 20)),
        st.tuples(st.just("visibility"), st.integers(0, 20), st.sampled_from([0, 3, 7])),
        st.tuples(st.just("advance"), st.sampled_from([1, 4, 11])),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_every_fetch_hands_out_each_group_in_publish_order(ops: list[tuple]) -> None:
    """Model: per group, the bodies not yet acked, in publish order. A fetch
    must hand out, of each group, the oldest ones not yet acked, in order,
    and only of groups none of whose messages is in flight."""
    w = World()
    q: Queue = w.declare(visibility_timeout=10)
    pending: dict[str, list[bytes]] = {g: [] for g in _GROUPS}
    out: dict[int, bytes] = {}  # delivery id -> body, as the client knows them
    serial = 0
    for op in ops:
        if op[0] == "put":
            _, group, n = op
            batch = []
            for _ in range(n):
                body = f"{group}{serial}".encode()
                serial += 1
                batch.append(In(body))
                pending[group].append(body)
            q.put(batch, w.now, group=group)
        elif op[0] == "fetch":
            got = q.fetch(B, op[1], w.now)
            in_flight = {f.message.body for f in q.inspect(1000).in_flight} - {m.body for m in got}
            for group in _GROUPS:
                handed = [m.body for m in got if m.body.decode()[0] == group]
                if handed:
                    assert not any(b.decode()[0] == group for b in in_flight)
                    assert handed == pending[group][: len(handed)]
            out.update((m.delivery_id, m.body) for m in got)
        elif op[0] == "advance":
            w.advance(op[1])
        else:
            held = {f.delivery_id for f in q.inspect(1000).in_flight}
            live = sorted(d for d in out if d in held)
            if not live:
                continue
            delivery_id = live[op[1] % len(live)]
            if op[0] == "ack":
                q.ack(B, [delivery_id], w.now)
                body = out.pop(delivery_id)
                pending[body.decode()[0]].remove(body)
            elif op[0] == "nack":
                q.nack(B, [delivery_id], w.now)
            else:
                q.change_visibility(B, [delivery_id], w.now, op[2])
    check_conservation(q)
