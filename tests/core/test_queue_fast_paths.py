"""The queue's fast paths agree with its generic ones.

Three shortcuts of core/queues.py serve the W1 hot path: a put of bare bodies
(``_admit`` without its loop), a fetch with a byte budget whose messages
fit it (``_within``, skipping ``_take_ready``), and an ack whose ids are all
held by the caller (``_all_held`` and ``_release_all``, in C passes). Each
test runs the same operations on two queues, one with the shortcut taken
when it applies and one forced onto the generic path, and checks that the
answers, the errors and the queues' states (including how leases count
their outstanding messages, seen when their visibility timeout fires) are
the same.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from test_queues import FakePeer, In, World, view

from minibroker.core import queues as queues_module
from minibroker.core.config import Limits
from minibroker.core.queues import Queue
from minibroker.errors import BrokerError

A = FakePeer(1)
B = FakePeer(2)


def outcome(run: Any, *args: Any, **kwargs: Any) -> Any:
    """What ``run(*args, **kwargs)`` returned, or its error's class, message and details."""
    try:
        result = run(*args, **kwargs)
    except BrokerError as exc:
        return (type(exc).__name__, exc.message, exc.details)
    if isinstance(result, list):
        return [view(m) if not isinstance(m, int) else m for m in result]
    return result


def state(q: Queue) -> Any:
    contents = q.inspect(10_000)
    return (
        q.statistics(),
        [view(m) for m in contents.ready],
        sorted((i.delivery_id, i.conn_id, i.deadline) for i in contents.in_flight),
    )


def generic_acks(q: Queue) -> Queue:
    """``q`` with the ack shortcut turned off."""
    q._all_held = lambda conn_id, delivery_ids: None  # type: ignore[method-assign]
    return q


fetches = st.lists(st.tuples(st.sampled_from([A, B]), st.integers(1, 4)), min_size=1, max_size=4)


@settings(max_examples=150)
@given(fetches, st.data())
def test_acks_take_the_same_effect_on_both_paths(
    taken: list[tuple[FakePeer, int]], data: st.DataObject
) -> None:
    worlds = [World(), World()]
    queues = [
        worlds[0].declare(visibility_timeout=5),
        generic_acks(worlds[1].declare(visibility_timeout=5)),
    ]
    held: dict[int, list[int]] = {1: [], 2: []}
    for world, q in zip(worlds, queues, strict=True):
        q.put([bytes([i]) for i in range(12)], world.now)
    for peer, count in taken:
        answers = [
            outcome(q.fetch, peer, count, w.now) for w, q in zip(worlds, queues, strict=True)
        ]
        assert answers[0] == answers[1]
        held[peer.conn_id] += [m["id"] for m in answers[0]]
    candidates = held[1] + held[2] + [999_999]
    for _ in range(data.draw(st.integers(1, 3))):
        peer = data.draw(st.sampled_from([A, B]))
        ids = data.draw(st.lists(st.sampled_from(candidates), max_size=6))
        results = [outcome(q.ack, peer, ids, w.now) for w, q in zip(worlds, queues, strict=True)]
        assert results[0] == results[1]
        assert state(queues[0]) == state(queues[1])
    # The leases' outstanding counts show when their timers fire: what comes back.
    for world in worlds:
        world.advance(6)
    assert state(queues[0]) == state(queues[1])
    again = [outcome(q.fetch, A, 100, w.now) for w, q in zip(worlds, queues, strict=True)]
    assert [(m["body"], m["count"]) for m in again[0]] == [
        (m["body"], m["count"]) for m in again[1]
    ]


sized = st.lists(
    st.tuples(
        st.integers(0, 300),
        st.none() | st.dictionaries(st.text(max_size=3), st.text(max_size=20), max_size=2),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150)
@given(sized, st.integers(1, 8), st.integers(1, 2_000))
def test_fetches_with_a_byte_budget_agree_with_the_message_by_message_path(
    messages: list[tuple[int, dict[str, str] | None]], count: int, max_bytes: int
) -> None:
    batch = [In(bytes(size), headers) for size, headers in messages]
    fast, slow = World(), World()
    qf, qs = fast.declare(), slow.declare()
    qf.put(batch, fast.now)
    qs.put(batch, slow.now)
    got = outcome(qf.fetch, A, count, fast.now, max_bytes=max_bytes)
    with mock.patch.object(queues_module, "_within", lambda ready, count, max_bytes: False):
        expected = outcome(qs.fetch, A, count, slow.now, max_bytes=max_bytes)
    assert got == expected
    assert state(qf) == state(qs)


@settings(max_examples=150)
@given(st.lists(st.integers(0, 200), min_size=1, max_size=6), st.booleans())
def test_bare_bodies_are_put_as_messages_without_headers(
    sizes: list[int], dead_letters: bool
) -> None:
    """Bare bodies and ``In`` objects: the same messages, or the same TooLarge
    naming the same message (a small limit makes some too large)."""
    limits = Limits(max_message_bytes=150, max_item_bytes=220)
    options = {"dead_letter_queue": "dlq"} if dead_letters else {}
    bare, mapped = World(limits), World(limits)
    qb, qm = bare.declare(**options), mapped.declare(**options)
    bodies = [bytes(size) for size in sizes]
    assert outcome(qb.put, bodies, bare.now) == outcome(qm.put, [In(b) for b in bodies], mapped.now)
    assert state(qb) == state(qm)
    assert all(m.headers is None for m in qb.inspect(100).ready)
