"""Hypothesis state machine: the queue core against a simple reference model.

The reference knows, for every message ever put, where it is (ready, in
flight with which connection, delayed, dead-lettered, acked) and its delivery
count. The core must agree after every step, and every delivery must obey:

* no message is held by two consumers at once;
* every message is acked, dead-lettered or still in the queue (or its
  dead-letter queue): never lost, never invented;
* FIFO among never-delivered messages;
* a fetch takes the messages that came back first, in publish order (as
  docs/queues.md promises: "it joins the messages returned before it at the
  front ... in the order they were published"), then the never-delivered
  ones; a restart puts every ready message back in publish order;
* delivery counts only grow (across restarts too: they may repeat, never fall).

The durable variant restarts the broker on a memory-backed "data directory"
with tiny journal segments, so compaction moves and deletes segments
mid-run; after a restart in-flight and delayed messages come back ready.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from test_queues import FakePeer, In
from test_queues_journal import MemoryOpener

from minibroker.core import queues as queues_module
from minibroker.core.broker import Broker
from minibroker.core.queue_journal import CompactionSettings
from minibroker.core.queue_message import Message
from minibroker.core.queues import Queue, QueueOptions
from minibroker.errors import UnknownDelivery

VISIBILITY = 10.0
MAX_DELIVERIES = 3
CONNS = (1, 2, 3)

READY, IN_FLIGHT, DELAYED, DEAD, ACKED, PURGED = (
    "ready",
    "in_flight",
    "delayed",
    "dead",
    "acked",
    "purged",
)


@dataclass
class Ref:
    seq: int
    state: str = READY
    count: int = 0
    holder: int = 0
    delivery_id: int = 0
    deadline: float = 0.0
    until: float = 0.0
    #: Highest delivery count a consumer has seen.
    seen: int = 0
    #: Ready among the returned messages at the front (until a restart).
    returned: bool = False


class QueueMachine(RuleBasedStateMachine):
    durable = False

    def __init__(self) -> None:
        super().__init__()
        self.saved_defaults = queues_module.compaction_defaults
        queues_module.compaction_defaults = CompactionSettings(
            segment_bytes=128, check_bytes=64, min_bytes=256, live_ratio=0.5, move_bytes=100
        )
        self.opener = MemoryOpener() if self.durable else None
        self.now = 1000.0
        self.ref: dict[bytes, Ref] = {}
        self.next_seq = 0
        self.stale_ids: list[int] = []
        #: token -> (conn, max_messages, visibility timeout, deadline)
        self.waiters: dict[int, tuple[int, int, float, float]] = {}
        self.next_token = 1
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        self.broker = Broker(storage=self.opener)
        self.queues = self.broker.namespace("").queues
        self.peers = {c: FakePeer(c) for c in CONNS}
        self.seen_tokens: set[int] = set()

    @initialize()
    def declare(self) -> None:
        durable = self.durable
        self.queues.declare("dlq", QueueOptions(durable=durable), self.now)
        self.queues.declare(
            "q",
            QueueOptions(
                visibility_timeout=VISIBILITY,
                max_deliveries=MAX_DELIVERIES,
                dead_letter_queue="dlq",
                durable=durable,
            ),
            self.now,
        )

    def teardown(self) -> None:
        queues_module.compaction_defaults = self.saved_defaults
        self.broker.close()

    @property
    def q(self) -> Queue:
        return self.queues.get("q")

    # -------------------------------------------------------- reference

    def in_state(self, state: str) -> list[bytes]:
        return [b for b, r in self.ref.items() if r.state == state]

    def held_by(self, conn: int) -> list[bytes]:
        return [b for b, r in self.ref.items() if r.state == IN_FLIGHT and r.holder == conn]

    def _ready_in_order(self) -> list[bytes]:
        """The ready messages in the order a fetch must take them: those that
        came back (in publish order), then the others (in publish order)."""
        ready = [b for b, r in self.ref.items() if r.state == READY]
        return sorted(ready, key=lambda b: (not self.ref[b].returned, self.ref[b].seq))

    def _delivered(self, conn: int, messages: list[Message], vt: float) -> None:
        """Check a delivery against the reference and record it."""
        never_ready = sorted(
            (b for b, r in self.ref.items() if r.state == READY and r.count == 0),
            key=lambda b: self.ref[b].seq,
        )
        fresh = [m.body for m in messages if self.ref[m.body].count == 0]
        assert fresh == never_ready[: len(fresh)], "FIFO among never-delivered messages"
        if fresh and not self.restarts:
            # Requeued messages wait at the front (a restart re-sorts by publish order).
            batch = {m.body for m in messages}
            requeued = {b for b, r in self.ref.items() if r.state == READY and r.count}
            assert requeued <= batch, "a requeued message was passed over"
        live_ids = {r.delivery_id for r in self.ref.values() if r.state == IN_FLIGHT}
        for m in messages:
            r = self.ref[m.body]
            assert r.state == READY, f"{m.body!r} delivered while {r.state}"
            assert m.delivery_count == r.count + 1
            assert m.delivery_count >= r.seen, "delivery counts never fall"
            assert m.delivery_id not in live_ids
            live_ids.add(m.delivery_id)
            r.state, r.holder, r.delivery_id = IN_FLIGHT, conn, m.delivery_id
            r.returned = False
            r.count = r.seen = m.delivery_count
            r.deadline = self.now + vt

    def _returned(self, body: bytes) -> None:
        """A message comes back from a consumer (nack, timeout, disconnect)."""
        r = self.ref[body]
        self.stale_ids.append(r.delivery_id)
        r.state = DEAD if r.count >= MAX_DELIVERIES else READY
        r.returned = r.state == READY

    def _check_waiters(self) -> None:
        """Waiters the core resolved since the last step: record their deliveries."""
        for token, (conn, _n, vt, deadline) in list(self.waiters.items()):
            peer = self.peers[conn]
            if token in peer.resolved:
                result = peer.resolved[token]
                del self.waiters[token]
                if not result:
                    assert deadline <= self.now, "a waiter was resolved empty before its time"
                    continue
                batch = []
                for view in result:
                    m = Message(view["body"], view["headers"], view["published_at"])
                    m.delivery_count, m.delivery_id = view["count"], view["id"]
                    batch.append(m)
                self._delivered(conn, batch, vt)
            else:
                assert deadline > self.now, "a waiter outlived its deadline"

    # ------------------------------------------------------------ rules

    @rule(count=st.integers(1, 5))
    def put(self, count: int) -> None:
        bodies = []
        for _ in range(count):
            body = b"m%d" % self.next_seq
            self.ref[body] = Ref(self.next_seq)
            self.next_seq += 1
            bodies.append(body)
        assert self.q.put([In(b) for b in bodies], self.now) == count
        self._check_waiters()

    @rule(
        conn=st.sampled_from(CONNS),
        n=st.integers(1, 4),
        vt=st.sampled_from([None, 1.0, 25.0]),
    )
    def fetch(self, conn: int, n: int, vt: float | None) -> None:
        expected = self._ready_in_order()[:n]
        messages = self.q.fetch(self.peers[conn], n, self.now, vt)
        assert [m.body for m in messages] == expected
        self._delivered(conn, messages, VISIBILITY if vt is None else vt)

    @precondition(lambda self: not self.in_state(READY))
    @rule(
        conn=st.sampled_from(CONNS),
        n=st.integers(1, 3),
        timeout=st.sampled_from([1.0, 5.0, 50.0]),
        vt=st.sampled_from([None, 2.0]),
    )
    def wait(self, conn: int, n: int, timeout: float, vt: float | None) -> None:
        token = self.next_token
        self.next_token += 1
        self.q.wait(self.peers[conn], token, n, self.now, timeout, vt)
        self.waiters[token] = (conn, n, VISIBILITY if vt is None else vt, self.now + timeout)
        self._check_waiters()

    def _pick(self, data: st.DataObject, conn: int) -> tuple[list[int], bool]:
        held = self.held_by(conn)
        chosen = data.draw(st.lists(st.sampled_from(held), unique=True) if held else st.just([]))
        ids = [self.ref[b].delivery_id for b in chosen]
        bogus_kind = data.draw(st.sampled_from(["none", "none", "other", "stale", "huge"]))
        bogus: list[int] = []
        if bogus_kind == "other":
            others = [self.ref[b].delivery_id for c in CONNS if c != conn for b in self.held_by(c)]
            bogus = others[:1]
        elif bogus_kind == "stale" and self.stale_ids:
            bogus = [data.draw(st.sampled_from(self.stale_ids))]
        elif bogus_kind == "huge":
            bogus = [2**62]
        if bogus:
            ids.insert(data.draw(st.integers(0, len(ids))), bogus[0])
        return ids, bool(bogus)

    def _refused(self, call: Any) -> None:
        before = (self.q.statistics(), self.queues.get("dlq").statistics())
        try:
            call()
        except UnknownDelivery:
            pass
        else:
            raise AssertionError("a batch with a bad delivery id was accepted")
        assert (self.q.statistics(), self.queues.get("dlq").statistics()) == before

    @rule(conn=st.sampled_from(CONNS), data=st.data())
    def ack(self, conn: int, data: st.DataObject) -> None:
        ids, bogus = self._pick(data, conn)
        if bogus:
            self._refused(lambda: self.q.ack(self.peers[conn], ids, self.now))
            return
        assert self.q.ack(self.peers[conn], ids, self.now) == len(ids)
        by_id = {r.delivery_id: r for r in self.ref.values() if r.state == IN_FLIGHT}
        for delivery_id in ids:
            by_id[delivery_id].state = ACKED
            self.stale_ids.append(delivery_id)

    @rule(
        conn=st.sampled_from(CONNS),
        data=st.data(),
        requeue=st.booleans(),
        delay=st.sampled_from([0.0, 0.0, 2.0]),
    )
    def nack(self, conn: int, data: st.DataObject, requeue: bool, delay: float) -> None:
        ids, bogus = self._pick(data, conn)
        peer = self.peers[conn]
        if bogus:
            self._refused(lambda: self.q.nack(peer, ids, self.now, requeue=requeue, delay=delay))
            return
        by_body = {r.delivery_id: b for b, r in self.ref.items() if r.state == IN_FLIGHT}
        assert self.q.nack(peer, ids, self.now, requeue=requeue, delay=delay) == len(ids)
        for delivery_id in ids:
            body = by_body[delivery_id]
            r = self.ref[body]
            if not requeue:
                self.stale_ids.append(delivery_id)
                r.state = DEAD
            elif delay and r.count < MAX_DELIVERIES:
                self.stale_ids.append(delivery_id)
                r.state, r.until = DELAYED, self.now + delay
            else:
                self._returned(body)
        self._check_waiters()

    @rule(conn=st.sampled_from(CONNS), data=st.data(), timeout=st.sampled_from([0.0, 2.0, 40.0]))
    def change_visibility(self, conn: int, data: st.DataObject, timeout: float) -> None:
        ids, bogus = self._pick(data, conn)
        peer = self.peers[conn]
        if bogus:
            self._refused(lambda: self.q.change_visibility(peer, ids, self.now, timeout))
            return
        by_body = {r.delivery_id: b for b, r in self.ref.items() if r.state == IN_FLIGHT}
        assert self.q.change_visibility(peer, ids, self.now, timeout) == len(ids)
        for delivery_id in ids:
            body = by_body[delivery_id]
            if timeout:
                self.ref[body].deadline = self.now + timeout  # same delivery id, new deadline
            else:
                self._returned(body)
        self._check_waiters()

    @rule(conn=st.sampled_from(CONNS))
    def purge_held(self, conn: int) -> None:
        held = self.held_by(conn)
        assert self.q.purge_held(self.peers[conn], self.now) == len(held)
        for body in held:
            self.stale_ids.append(self.ref[body].delivery_id)
            self.ref[body].state = PURGED

    @rule(dt=st.sampled_from([0.5, 1.0, 3.0, 11.0, 30.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        for body, r in self.ref.items():
            if r.state == IN_FLIGHT and r.deadline <= self.now:
                self._returned(body)
            elif r.state == DELAYED and r.until <= self.now:
                r.state, r.returned = READY, True
        self.broker.on_time(self.now)
        self._check_waiters()

    @rule(conn=st.sampled_from(CONNS))
    def disconnect(self, conn: int) -> None:
        for body in self.held_by(conn):
            self._returned(body)
        for token in [t for t, w in self.waiters.items() if w[0] == conn]:
            del self.waiters[token]
        self.queues.disconnect(self.peers[conn], self.now)
        self._check_waiters()
        assert all(self.ref[b].holder != conn for b in self.held_by(conn))

    @precondition(lambda self: self.durable)
    @rule()
    def restart(self) -> None:
        self.broker.close()
        for r in self.ref.values():
            if r.state == IN_FLIGHT:
                r.state = READY
                r.count -= 1  # its last delivery never finished
            elif r.state == DELAYED:
                r.state = READY
            r.returned = False  # the journal's publish order, for all that is ready
        self.waiters.clear()
        self.stale_ids.clear()  # delivery ids start again in a new process
        self.restarts += 1
        self._start()

    # ------------------------------------------------------- invariants

    @invariant()
    def agrees_with_reference(self) -> None:
        q = self.q
        contents = q.inspect(100_000)
        assert [m.body for m in contents.ready] == self._ready_in_order()
        held = {h.message.body: (h.conn_id, h.delivery_id) for h in contents.in_flight}
        assert len(held) == len(contents.in_flight), "a message held twice"
        assert held == {
            b: (self.ref[b].holder, self.ref[b].delivery_id) for b in self.in_state(IN_FLIGHT)
        }
        assert sorted(d.message.body for d in contents.delayed) == sorted(self.in_state(DELAYED))
        dead = self.queues.get("dlq").inspect(100_000).ready
        assert sorted(m.body for m in dead) == sorted(self.in_state(DEAD))
        for m in dead:
            assert m.headers is not None
            assert m.headers["x-death-queue"] == "q"
            assert m.headers["x-death-reason"] in ("max_deliveries", "rejected")

    @invariant()
    def counters_balance(self) -> None:
        s = self.q.statistics()
        assert s.published == (
            s.acked + s.dead_lettered + s.dropped + s.purged + s.ready + s.in_flight + s.delayed
        )
        assert s.dropped == 0
        if self.waiters:
            assert s.ready == 0, "a fetch waits while messages are ready"
        assert s.waiting_fetches == len(self.waiters)


class DurableQueueMachine(QueueMachine):
    durable = True


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = settings(stateful_step_count=30, deadline=None)
TestDurableQueueMachine = DurableQueueMachine.TestCase
TestDurableQueueMachine.settings = settings(stateful_step_count=30, deadline=None)
