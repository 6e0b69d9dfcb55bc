"""The queue's column path (bare bodies as lists, ``FirstDeliveries``) agrees with the general one.

Bare bodies put into a plain queue wait as two lists and a compact fetch
hands them out as ``FirstDeliveries`` held by their lease, acked a run at a
time (core/queues.py: ``_put_bare``, ``_deliver_first``, ``_ack_first``);
every other path first turns them into ``Message`` objects (``_flush_tail``,
``_materialize``). Each test runs the same random operations on two queues,
one with the column path and one without it (``Queue.columns`` off), and
checks that every answer (as the wire encodes it, too), every error and
the queues' counters are the same after each step, and their contents at
the end.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_queues import In, World, view

from minibroker.core.config import Limits
from minibroker.core.queue_message import FirstDeliveries, Message
from minibroker.core.queues import Queue
from minibroker.errors import BrokerError
from minibroker.protocol.handlers.queues import encode_compact


def views(result: object) -> Any:
    """Deliveries as plain values, whichever form they came in."""
    if isinstance(result, FirstDeliveries):
        return [view(m) for m in result.messages()]
    if isinstance(result, list):
        return [view(m) if isinstance(m, Message) else m for m in result]
    return result


class Peer:
    """A connection that records what its parked fetches were answered, as values."""

    def __init__(self, conn_id: int) -> None:
        self.conn_id = conn_id
        self.answers: list[tuple[int, Any, Any]] = []

    def resolve(self, token: int, result: object) -> None:
        wire = encode_compact(result) if isinstance(result, (list, FirstDeliveries)) else None
        self.answers.append((token, views(result), wire))

    def reject(self, token: int, error: BrokerError) -> None:
        self.answers.append((token, type(error).__name__, None))

    def push_ready(self, source: object) -> None:
        raise AssertionError("queues never push")

    def kick(self, error: BrokerError) -> None:
        raise AssertionError("queues never kick")


def outcome(run: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        result = run(*args, **kwargs)
    except BrokerError as exc:
        return (type(exc).__name__, exc.message, exc.details)
    if isinstance(result, (list, FirstDeliveries)):
        return views(result), encode_compact(result)
    return result


bodies = st.lists(st.binary(max_size=40), min_size=1, max_size=6)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), bodies),
        st.tuples(st.just("put"), bodies),
        st.tuples(
            st.just("put_headers"),
            st.lists(st.tuples(st.binary(max_size=8), st.booleans()), min_size=1, max_size=3),
        ),
        st.tuples(st.just("put_ttl"), bodies, st.sampled_from([0.0, 2.0])),
        st.tuples(st.just("put_delayed"), bodies, st.none() | st.just("g")),
        st.tuples(st.just("put_group"), bodies),
        st.tuples(
            st.just("fetch"),
            st.integers(0, 1),
            st.integers(1, 8),
            st.none() | st.integers(1, 600),
            st.booleans(),
        ),
        st.tuples(st.just("wait"), st.integers(0, 1), st.integers(1, 8), st.booleans()),
        st.tuples(st.just("ack_run"), st.integers(0, 1), st.integers(0, 30), st.integers(0, 12)),
        st.tuples(st.just("ack_run"), st.integers(0, 1), st.integers(0, 30), st.integers(0, 12)),
        st.tuples(st.just("ack_some"), st.integers(0, 1), st.lists(st.integers(0, 40), max_size=5)),
        st.tuples(st.just("ack_held"), st.integers(0, 1), st.integers(0, 40), st.integers(1, 10)),
        st.tuples(st.just("ack_held"), st.integers(0, 1), st.integers(0, 40), st.integers(1, 10)),
        st.tuples(st.just("inspect")),
        st.tuples(
            st.just("nack"),
            st.integers(0, 1),
            st.lists(st.integers(0, 40), max_size=4),
            st.booleans(),
            st.sampled_from([0.0, 1.0]),
        ),
        st.tuples(st.just("visibility"), st.integers(0, 1), st.integers(0, 40), st.integers(0, 8)),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 3.0, 11.0])),
        st.tuples(st.just("disconnect"), st.integers(0, 1)),
        st.tuples(st.just("purge")),
        st.tuples(st.just("purge_held"), st.integers(0, 1)),
        st.tuples(st.just("reconfigure"), st.sampled_from([None, 5])),
    ),
    min_size=1,
    max_size=25,
)


def run_both(ops: list[tuple[Any, ...]], options: dict[str, Any], limits: Limits) -> None:
    worlds = [World(limits), World(limits)]
    queues = [w.declare(visibility_timeout=10, **options) for w in worlds]
    queues[1].columns = False
    peers = [[Peer(1), Peer(2)], [Peer(1), Peer(2)]]
    for token, op in enumerate(ops, 1):
        results = []
        for world, q, (a, b) in zip(worlds, queues, peers, strict=True):
            results.append(apply(op, world, q, (a, b), token))
        assert results[0] == results[1], op
        assert [p.answers for p in peers[0]] == [p.answers for p in peers[1]], op
        assert queues[0].statistics() == queues[1].statistics(), op
    assert snapshot(queues[0]) == snapshot(queues[1])
    for world in worlds:
        world.advance(60)
    assert [p.answers for p in peers[0]] == [p.answers for p in peers[1]]
    assert snapshot(queues[0]) == snapshot(queues[1])


def snapshot(q: Queue) -> Any:
    contents = q.inspect(10_000)
    return (
        q.statistics(),
        [view(m) for m in contents.ready],
        [(i.delivery_id, view(i.message), i.conn_id, i.deadline) for i in contents.in_flight],
        [(view(d.message), d.until) for d in contents.delayed],
    )


def apply(op: tuple[Any, ...], world: World, q: Queue, peers: tuple[Peer, Peer], token: int) -> Any:
    kind = op[0]
    now = world.now
    first_id = world.queues.next_delivery_id - 40  # ids near the recent deliveries
    if kind == "put":
        return outcome(q.put, list(op[1]), now)
    if kind == "put_maps":
        return outcome(q.put, [In(b) for b in op[1]], now)
    if kind == "put_numbered":  # bodies numbered in publish order, world-wide
        serial = getattr(world, "serial", 0)
        world.serial = serial + op[1]  # type: ignore[attr-defined]
        return outcome(q.put, [b"%d" % i for i in range(serial, serial + op[1])], now)
    if kind == "put_headers":
        return outcome(q.put, [In(b, {"h": "v"} if h else None) for b, h in op[1]], now)
    if kind == "put_ttl":
        return outcome(q.put, list(op[1]), now, ttl=op[2])
    if kind == "put_delayed":
        return outcome(q.put, list(op[1]), now, delay=1.0, group=op[2])
    if kind == "put_group":
        return outcome(q.put, list(op[1]), now, group="g")
    if kind == "fetch":
        _, who, count, max_bytes, compact = op
        fetch = q.fetch_compact if compact else q.fetch
        return outcome(fetch, peers[who], count, now, None, max_bytes)
    if kind == "wait":
        _, who, count, compact = op
        return outcome(q.wait, peers[who], token, count, now, 5.0, compact=compact)
    if kind == "ack_run":
        _, who, start, length = op
        ids = list(range(max(1, first_id + start), max(1, first_id + start) + length))
        return outcome(q.ack, peers[who], ids, now)
    if kind == "ack_held":  # a run of what was delivered (acked already, or not)
        _, who, start, length = op
        delivered = [i for i in range(1, world.queues.next_delivery_id)]
        start = max(0, len(delivered) - 1 - start)
        return outcome(q.ack, peers[who], delivered[start : start + length], now)
    if kind == "inspect":
        return snapshot(q)
    if kind == "ack_first":  # a run of the ids delivered so far
        _, who, start, length = op
        start = 1 + start % max(1, world.queues.next_delivery_id - 1)
        world.last_ack = list(range(start, start + length))  # type: ignore[attr-defined]
        return outcome(q.ack, peers[who], world.last_ack, now)  # type: ignore[attr-defined]
    if kind == "ack_again":  # the last run acked, again (by either consumer)
        return outcome(q.ack, peers[op[1]], getattr(world, "last_ack", [1]), now)
    if kind == "ack_some":
        return outcome(q.ack, peers[op[1]], [max(1, first_id + i) for i in op[2]], now)
    if kind == "nack_run":  # a run of the ids delivered so far, requeued
        _, who, start, length = op
        start = 1 + start % max(1, world.queues.next_delivery_id - 1)
        return outcome(q.nack, peers[who], list(range(start, start + length)), now)
    if kind == "nack":
        _, who, offsets, requeue, delay = op
        ids = [max(1, first_id + i) for i in offsets]
        return outcome(q.nack, peers[who], ids, now, requeue=requeue, delay=delay)
    if kind == "visibility":
        _, who, offset, timeout = op
        ids = [max(1, first_id + offset)]
        return outcome(q.change_visibility, peers[who], ids, now, timeout)
    if kind == "advance":
        world.advance(op[1])
        return None
    if kind == "disconnect":
        world.queues.disconnect(peers[op[1]], now)
        return None
    if kind == "purge":
        return outcome(q.purge, now)
    if kind == "purge_held":
        return outcome(q.purge_held, peers[op[1]], now)
    if kind == "reconfigure":
        options = q.options.to_dict()
        options["message_ttl"] = op[1]
        return outcome(world.queues.reconfigure, q.name, type(q.options)(**options), now)
    raise AssertionError(kind)


@settings(max_examples=400, deadline=None)
@given(operations)
def test_the_column_path_agrees_with_the_general_one(ops: list[tuple[Any, ...]]) -> None:
    run_both(ops, {}, Limits())


@settings(max_examples=150, deadline=None)
@given(operations, st.sampled_from([{"max_deliveries": 2, "dead_letter_queue": "dlq"}, {}]))
def test_and_with_dead_letters_and_small_frames(
    ops: list[tuple[Any, ...]], options: dict[str, Any]
) -> None:
    """A small frame limit makes some bodies too large, and fetches stop at the budget."""
    run_both(ops, options, Limits(max_message_bytes=30, max_item_bytes=160))


#: The W1 path only: puts, compact fetches and waits, acks of runs of the
#: first ids (often of ids acked already, by the other consumer, or past the
#: deliveries), with a visibility timeout now and then.
w1_operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), bodies),
        st.tuples(st.just("put_maps"), bodies),
        st.tuples(st.just("ack_again"), st.integers(0, 1)),
        st.tuples(
            st.just("fetch"),
            st.integers(0, 1),
            st.integers(1, 8),
            st.none() | st.integers(1, 600),
            st.just(True),
        ),
        st.tuples(st.just("wait"), st.integers(0, 1), st.integers(1, 8), st.just(True)),
        st.tuples(st.just("ack_first"), st.integers(0, 1), st.integers(1, 12), st.integers(0, 5)),
        st.tuples(st.just("ack_first"), st.integers(0, 1), st.integers(1, 12), st.integers(0, 5)),
        st.tuples(st.just("advance"), st.sampled_from([3.0, 11.0])),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=400, deadline=None)
@given(w1_operations)
def test_the_w1_path_agrees_with_the_general_one(ops: list[tuple[Any, ...]]) -> None:
    run_both(ops, {}, Limits())


def test_a_compact_fetch_of_bare_bodies_makes_no_message() -> None:
    """The column path is taken where it applies (else the tests above compare nothing)."""
    world = World()
    q = world.declare()
    peer = Peer(1)
    q.put([b"a", b"b", b"c"], world.now)
    got = q.fetch_compact(peer, 2, world.now)
    assert isinstance(got, FirstDeliveries)
    assert encode_compact(got) == {
        "first_id": got.first_id,
        "bodies": [b"a", b"b"],
        "delivery_count": 1,
        "published_at": got.published_at[0],
    }
    assert q._inflight == {}
    assert q.ack(peer, [got.first_id, got.first_id + 1], world.now) == 2
    assert q.statistics().in_flight == 0 and q.statistics().ready == 1
    assert q._leases == {}


#: W1 with requeues: numbered puts, compact fetches, acks and nacks of runs
#: of ids, timeouts and disconnects (every way a message comes back).
w1_requeue_operations = st.lists(
    st.one_of(
        st.tuples(st.just("put_numbered"), st.integers(1, 6)),
        st.tuples(
            st.just("fetch"), st.integers(0, 1), st.integers(1, 8), st.none(), st.just(True)
        ),
        st.tuples(st.just("wait"), st.integers(0, 1), st.integers(1, 8), st.just(True)),
        st.tuples(st.just("ack_first"), st.integers(0, 1), st.integers(1, 12), st.integers(0, 5)),
        st.tuples(st.just("nack_run"), st.integers(0, 1), st.integers(1, 12), st.integers(1, 3)),
        st.tuples(st.just("nack_run"), st.integers(0, 1), st.integers(1, 12), st.integers(1, 3)),
        st.tuples(st.just("advance"), st.sampled_from([3.0, 11.0])),
        st.tuples(st.just("disconnect"), st.integers(0, 1)),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(w1_requeue_operations)
def test_the_w1_path_with_requeues_agrees_and_keeps_publication_order(
    ops: list[tuple[Any, ...]],
) -> None:
    """Both paths agree after nacks, and with only requeues (no expiry, no
    dead letters) the ready messages are in publication order on each:
    returns merge by publish order, which the column path gives the
    messages it materializes (their first delivery id)."""
    worlds = [World(), World()]
    queues = [w.declare(visibility_timeout=10) for w in worlds]
    queues[1].columns = False
    peers = [[Peer(1), Peer(2)], [Peer(1), Peer(2)]]
    for token, op in enumerate(ops, 1):
        results = [
            apply(op, world, q, (a, b), token)
            for world, q, (a, b) in zip(worlds, queues, peers, strict=True)
        ]
        assert results[0] == results[1], op
        assert [p.answers for p in peers[0]] == [p.answers for p in peers[1]], op
        handed = [results[0][0]] if op[0] == "fetch" and type(results[0]) is tuple else []
        handed += [answer[1] for answer in peers[0][0].answers + peers[0][1].answers]
        for answer in handed:  # each answer: the oldest ready first
            numbers = [int(v["body"]) for v in answer]
            assert numbers == sorted(numbers), op
    assert snapshot(queues[0]) == snapshot(queues[1])
    for q in queues:
        numbers = [int(m.body) for m in q.inspect(10_000).ready]
        assert numbers == sorted(numbers)
