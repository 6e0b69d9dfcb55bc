"""Hypothesis state machine: the request router against a plain reference model.

Random interleavings of responders registering and leaving, connections
dropping, requests, deliveries, replies (right, late, forged) and the clock
moving. After every step each request has ended exactly the way the model
says, and a reply reached only the requester of that very request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import minibroker.core.rpc as rpc_core
from minibroker.core.broker import Broker
from minibroker.core.rpc import Responder, RpcReply
from minibroker.errors import (
    BrokerError,
    NoResponders,
    RequestCancelled,
    ResponderError,
    ResponderGone,
    Timeout,
)

SUBJECTS = ("a", "b.c")
GROUPS = (None, "g1", "g2")
N_PEERS = 4


class FakePeer:
    def __init__(self, conn_id: int) -> None:
        self._conn_id = conn_id
        self.finished: dict[int, RpcReply | BrokerError] = {}

    @property
    def conn_id(self) -> int:
        return self._conn_id

    def takes_reply(self) -> bool:
        return True

    def resolve(self, token: int, result: object) -> None:
        assert token not in self.finished, f"token {token} finished twice"
        assert isinstance(result, RpcReply)
        self.finished[token] = result

    def reject(self, token: int, error: BrokerError) -> None:
        assert token not in self.finished, f"token {token} finished twice"
        self.finished[token] = error

    def push_ready(self, source: object) -> None:
        pass

    def kick(self, error: BrokerError) -> None:
        raise AssertionError("never kicked")


@dataclass
class Req:
    rid: int
    requester: FakePeer
    token: int
    subject: str
    deadline: float
    holder: Responder | None = None
    #: What the requester must have received once the request ended.
    expect: type[BrokerError] | bytes | None = None


@dataclass
class Model:
    live: dict[int, Req] = field(default_factory=dict)
    ended: list[Req] = field(default_factory=list)
    responders: list[Responder] = field(default_factory=list)


class RouterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.broker = Broker()
        self.router = self.broker.namespace("n").rpc
        self.now = 0.0
        self.conn_ids = iter(range(1, 10_000))
        self.peers = [FakePeer(next(self.conn_ids)) for _ in range(N_PEERS)]
        self.next_sub = iter(range(1, 10_000))
        self.next_token = iter(range(1, 100_000))
        self.model = Model()

    # ------------------------------------------------------------ helpers

    def _end(self, req: Req, expect: type[BrokerError] | bytes | None) -> None:
        del self.model.live[req.rid]
        req.expect = expect
        self.model.ended.append(req)

    def _responders_of(self, subject: str) -> list[Responder]:
        return [r for r in self.model.responders if r.subject == subject]

    def _responder_left(self, responder: Responder) -> None:
        self.model.responders.remove(responder)
        for req in list(self.model.live.values()):
            if req.holder is responder:
                self._end(req, ResponderGone)
        if not self._responders_of(responder.subject):
            for req in list(self.model.live.values()):
                if req.subject == responder.subject and req.holder is None:
                    self._end(req, ResponderGone)

    # -------------------------------------------------------------- rules

    @rule(
        peer=st.integers(0, N_PEERS - 1),
        subject=st.sampled_from(SUBJECTS),
        group=st.sampled_from(GROUPS),
    )
    def register(self, peer: int, subject: str, group: str | None) -> None:
        responder = self.router.add_responder(self.peers[peer], next(self.next_sub), subject, group)
        self.model.responders.append(responder)

    @precondition(lambda self: self.model.responders)
    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        responder = data.draw(st.sampled_from(self.model.responders))
        responder.cancel(self.now)
        self._responder_left(responder)

    @rule(peer=st.integers(0, N_PEERS - 1))
    def disconnect(self, peer: int) -> None:
        gone = self.peers[peer]
        self.router.disconnect(gone, self.now)
        for req in list(self.model.live.values()):
            if req.requester is gone:
                self._end(req, None)  # abandoned: nobody is told
        for responder in [r for r in self.model.responders if r.peer is gone]:
            self._responder_left(responder)
        self.peers[peer] = FakePeer(next(self.conn_ids))  # it reconnects

    @rule(
        peer=st.integers(0, N_PEERS - 1),
        subject=st.sampled_from(SUBJECTS),
        timeout=st.sampled_from([0.5, 1.0, 3.0]),
    )
    def request(self, peer: int, subject: str, timeout: float) -> None:
        requester = self.peers[peer]
        token = next(self.next_token)
        try:
            rid = self.router.request(requester, token, subject, b"q", None, timeout, self.now)
        except NoResponders:
            assert not self._responders_of(subject)
            return
        assert self._responders_of(subject)
        self.model.live[rid] = Req(rid, requester, token, subject, self.now + timeout)

    @precondition(lambda self: self.model.responders)
    @rule(data=st.data(), budget=st.sampled_from([1, 200, 1 << 20]))
    def deliver(self, data: st.DataObject, budget: int) -> None:
        responder = data.draw(st.sampled_from(self.model.responders))
        for rid, subject, *_ in responder.take(budget):
            req = self.model.live.get(rid)
            assert req is not None, "an ended request was pushed"
            assert req.holder is None, "a request was pushed twice"
            assert subject == responder.subject == req.subject
            req.holder = responder

    @precondition(lambda self: any(r.holder is not None for r in self.model.live.values()))
    @rule(data=st.data(), fail=st.booleans())
    def reply(self, data: st.DataObject, fail: bool) -> None:
        held = [r for r in self.model.live.values() if r.holder is not None]
        req = data.draw(st.sampled_from(held))
        assert req.holder is not None
        body = b"reply-%d" % req.rid
        error = f"error-{req.rid}" if fail else None
        assert self.router.reply(req.holder.peer, req.rid, body, None, error, self.now) is True
        self._end(req, ResponderError if fail else body)

    @precondition(lambda self: any(r.holder is not None for r in self.model.live.values()))
    @rule(data=st.data())
    def forged_reply(self, data: st.DataObject) -> None:
        """Another connection cannot answer a request pushed elsewhere."""
        held = [r for r in self.model.live.values() if r.holder is not None]
        req = data.draw(st.sampled_from(held))
        assert req.holder is not None
        others = [p for p in self.peers if p is not req.holder.peer]
        forger = data.draw(st.sampled_from(others))
        assert self.router.reply(forger, req.rid, b"forged", None, None, self.now) is False

    @rule(data=st.data(), peer=st.integers(0, N_PEERS - 1))
    def stray_reply(self, data: st.DataObject, peer: int) -> None:
        """A late, duplicate, forged or premature reply is dropped, never delivered."""
        candidates = [r.rid for r in self.model.ended] + list(self.model.live)
        rid = data.draw(st.sampled_from(candidates)) if candidates else 12345
        replier = self.peers[peer]
        req = self.model.live.get(rid)
        if req is not None and req.holder is not None and req.holder.peer is replier:
            return  # that would be a legitimate reply; covered by `reply`
        dropped = self.router.stats.replies_dropped
        assert self.router.reply(replier, rid, b"stray", None, None, self.now) is False
        assert self.router.stats.replies_dropped == dropped + 1

    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        """The requester gives up (``request.cancel``): a live request ends with
        ``cancelled``, queued or held; an ended one, or another connection's
        token, is not withdrawn."""
        candidates = list(self.model.live.values()) + self.model.ended
        if not candidates:
            assert self.router.withdraw(self.peers[0], 12345) is False
            return
        req = data.draw(st.sampled_from(candidates))
        live = self.model.live.get(req.rid) is req
        other = data.draw(st.sampled_from(self.peers))
        if other is not req.requester:
            assert self.router.withdraw(other, req.token) is False
        abandoned = self.router.stats.outcomes["abandoned"]
        assert self.router.withdraw(req.requester, req.token) is live
        assert self.router.stats.outcomes["abandoned"] == abandoned + live
        if live:
            self._end(req, RequestCancelled)

    @rule(dt=st.sampled_from([0.1, 0.5, 1.0, 2.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.broker.on_time(self.now)
        for req in list(self.model.live.values()):
            if req.deadline <= self.now:
                self._end(req, Timeout)

    # --------------------------------------------------------- invariants

    @invariant()
    def pending_matches_the_model(self) -> None:
        assert set(self.router.pending_rids()) == set(self.model.live)
        assert self.router.responder_count() == len(self.model.responders)

    @invariant()
    def every_ended_request_ended_as_expected(self) -> None:
        for req in self.model.ended:
            got = req.requester.finished.get(req.token)
            if req.expect is None:
                assert got is None, "an abandoned requester was answered"
            elif isinstance(req.expect, bytes):
                assert got == RpcReply(req.expect, None), "a reply reached the wrong request"
            else:
                assert isinstance(got, req.expect), f"expected {req.expect}, got {got!r}"
        for req in self.model.live.values():
            assert req.token not in req.requester.finished

    @invariant()
    def responders_hold_and_queue_only_live_requests(self) -> None:
        """Nothing ended stays held by a responder or counted as queued for it
        (a withdrawn request included)."""
        for responder in self.model.responders:
            assert set(responder.held) <= set(self.model.live)
            queued = [p.rid for p in responder.outbox if p.state == rpc_core._QUEUED]
            assert set(queued) <= set(self.model.live)
            assert responder.has_queued() == bool(queued)

    @invariant()
    def one_timer_armed_no_later_than_the_first_deadline(self) -> None:
        """One broker timer while anything is pending, none when idle."""
        if not self.model.live:
            assert len(self.broker.timers) == 0
            return
        assert len(self.broker.timers) == 1
        earliest = min(req.deadline for req in self.model.live.values())
        next_deadline = self.broker.timers.next_deadline()
        assert next_deadline is not None and next_deadline <= earliest


TestRouter = RouterMachine.TestCase
