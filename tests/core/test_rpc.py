"""Unit tests of the request/reply model (minibroker.core.rpc): no protocol, no I/O."""

from __future__ import annotations

import math
from typing import Any

import pytest

from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig, Limits
from minibroker.core.rpc import RequestRouter, Responder, RpcReply
from minibroker.core.rpc_stats import MAX_TRACKED_SUBJECTS, OTHER_SUBJECT
from minibroker.errors import (
    BadRequest,
    BrokerError,
    InvalidName,
    LimitExceeded,
    NoResponders,
    ResponderError,
    ResponderGone,
    Timeout,
    TooLarge,
)


class FakePeer:
    """Records what the core tells one connection."""

    def __init__(self, conn_id: int) -> None:
        self._conn_id = conn_id
        self.resolved: dict[int, RpcReply] = {}
        self.rejected: dict[int, BrokerError] = {}
        self.ready: list[Responder] = []
        self.next_token = 1
        #: What ``takes_reply`` answers (False: a requester that stopped reading).
        self.reading = True

    @property
    def conn_id(self) -> int:
        return self._conn_id

    def takes_reply(self) -> bool:
        return self.reading

    def resolve(self, token: int, result: object) -> None:
        assert token not in self.resolved and token not in self.rejected, "finished twice"
        assert isinstance(result, RpcReply)
        self.resolved[token] = result

    def reject(self, token: int, error: BrokerError) -> None:
        assert token not in self.resolved and token not in self.rejected, "finished twice"
        self.rejected[token] = error

    def push_ready(self, source: Any) -> None:
        self.ready.append(source)

    def kick(self, error: BrokerError) -> None:
        raise AssertionError("request/reply never kicks a connection")

    def token(self) -> int:
        token = self.next_token
        self.next_token += 1
        return token


def make_router(**limits: Any) -> tuple[Broker, RequestRouter]:
    broker = Broker(CoreConfig(limits=Limits(**limits)))
    return broker, broker.namespace("test").rpc


def send(
    router: RequestRouter,
    peer: FakePeer,
    subject: str = "svc.echo",
    body: bytes = b"hi",
    *,
    timeout: float = 5.0,
    now: float = 0.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, int]:
    """Send a request; returns (token, rid)."""
    token = peer.token()
    rid = router.request(peer, token, subject, body, headers, timeout, now)
    return token, rid


def delivered(responder: Responder, budget: int = 1 << 20) -> list[int]:
    """What the connection would push now: the rids taken from the outbox."""
    return [item[0] for item in responder.take(budget)]


# ------------------------------------------------------------------ basics


def test_request_is_pushed_to_the_responder_and_the_reply_goes_back() -> None:
    broker, router = make_router()
    requester, responder_peer = FakePeer(1), FakePeer(2)
    responder = router.add_responder(responder_peer, 7, "svc.echo")
    token, rid = send(router, requester, body=b"ping", headers={"k": "v"}, timeout=2.5)

    assert responder_peer.ready == [responder]
    taken = responder.take(1 << 20)
    assert taken == [(rid, "svc.echo", b"ping", {"k": "v"}, 2.5)]
    assert router.reply(responder_peer, rid, b"pong", {"h": "1"}, None, now=0.001) is True

    assert requester.resolved == {token: RpcReply(b"pong", {"h": "1"})}
    assert router.snapshot().pending == 0
    assert len(broker.timers) == 0, "the deadline timer is cancelled by the reply"
    assert router.stats.outcomes["ok"] == 1
    assert router.stats.latency["svc.echo"].count == 1


def test_no_responders_is_immediate_and_changes_nothing() -> None:
    broker, router = make_router()
    requester = FakePeer(1)
    with pytest.raises(NoResponders):
        send(router, requester)
    assert router.snapshot().pending == 0
    assert len(broker.timers) == 0
    assert router.stats.outcomes["no_responders"] == 1


@pytest.mark.parametrize("subject", ["", "a..b", "svc.*", "svc.#", "has space", "x" * 300])
def test_invalid_subjects_are_refused(subject: str) -> None:
    _, router = make_router()
    with pytest.raises(InvalidName):
        router.add_responder(FakePeer(2), 1, subject)
    with pytest.raises(InvalidName):
        send(router, FakePeer(1), subject)
    assert router.stats.outcomes["no_responders"] == 0


def test_invalid_group_is_refused() -> None:
    _, router = make_router()
    with pytest.raises(InvalidName):
        router.add_responder(FakePeer(2), 1, "svc", group="bad group")
    assert router.responder_count() == 0


@pytest.mark.parametrize("timeout", [0.0, -1.0, math.nan, math.inf, 3601.0])
def test_bad_timeouts_are_refused_and_change_nothing(timeout: float) -> None:
    broker, router = make_router()
    responder = router.add_responder(FakePeer(2), 1, "svc")
    with pytest.raises(BadRequest):
        send(router, FakePeer(1), "svc", timeout=timeout)
    assert router.snapshot().pending == 0
    assert len(broker.timers) == 0
    assert delivered(responder) == []


def test_oversized_bodies_are_refused() -> None:
    _, router = make_router(max_message_bytes=10)
    responder_peer = FakePeer(2)
    responder = router.add_responder(responder_peer, 1, "svc")
    with pytest.raises(TooLarge):
        send(router, FakePeer(1), "svc", body=b"x" * 11)
    _, rid = send(router, FakePeer(1), "svc", body=b"x" * 10)
    delivered(responder)
    with pytest.raises(TooLarge):
        router.reply(responder_peer, rid, b"y" * 11, None, None, 0.0)
    assert router.snapshot().pending == 1, "a refused reply leaves the request waiting"


def test_responder_error_reaches_the_requester() -> None:
    _, router = make_router()
    requester, responder_peer = FakePeer(1), FakePeer(2)
    responder = router.add_responder(responder_peer, 1, "svc")
    token, rid = send(router, requester, "svc")
    delivered(responder)
    assert router.reply(responder_peer, rid, b"", None, "out of stock", 0.0) is True
    error = requester.rejected[token]
    assert isinstance(error, ResponderError)
    assert error.message == "out of stock"
    assert router.stats.outcomes["error"] == 1


def test_a_reply_to_a_requester_that_is_not_reading_is_dropped() -> None:
    """``takes_reply`` False: the reply is dropped as a late one is, and the
    request ends with ``limit_exceeded`` at once (outcome ``unread``)."""
    broker, router = make_router()
    requester, responder_peer = FakePeer(1), FakePeer(2)
    responder = router.add_responder(responder_peer, 1, "svc")
    token, rid = send(router, requester, "svc")
    failed_token, failed_rid = send(router, requester, "svc")
    delivered(responder)
    requester.reading = False
    assert router.reply(responder_peer, rid, b"big", None, None, 0.0) is False
    assert router.reply(responder_peer, failed_rid, b"", None, "oops", 0.0) is False
    assert not requester.resolved
    for dropped in (token, failed_token):
        error = requester.rejected[dropped]
        assert isinstance(error, LimitExceeded)
        assert error.details == {"subject": "svc"}
    assert router.stats.replies_dropped == 2
    assert router.stats.outcomes["unread"] == 2
    assert router.stats.outcomes["ok"] == router.stats.outcomes["error"] == 0
    assert router.snapshot().pending == 0
    assert responder.held == {}
    assert len(broker.timers) == 0


# --------------------------------------------------------------- deadlines


def test_timeout_fails_the_request_and_a_late_reply_is_dropped_and_counted() -> None:
    broker, router = make_router()
    requester, responder_peer = FakePeer(1), FakePeer(2)
    responder = router.add_responder(responder_peer, 1, "svc")
    token, rid = send(router, requester, "svc", timeout=1.5, now=10.0)
    delivered(responder)

    assert broker.on_time(11.4) == 0
    assert not requester.rejected
    assert broker.on_time(11.5) == 1
    assert isinstance(requester.rejected[token], Timeout)
    assert router.snapshot().pending == 0
    assert responder.held == {}

    assert router.reply(responder_peer, rid, b"late", None, None, 12.0) is False
    assert router.stats.replies_dropped == 1
    assert router.stats.outcomes["timeout"] == 1
    assert not requester.resolved


def test_request_that_expires_before_being_sent_is_never_pushed() -> None:
    broker, router = make_router()
    requester = FakePeer(1)
    responder = router.add_responder(FakePeer(2), 1, "svc")
    token, _ = send(router, requester, "svc", timeout=1.0)
    broker.on_time(1.0)
    assert isinstance(requester.rejected[token], Timeout)
    assert delivered(responder) == []
    assert not responder.has_queued()


def test_an_outbox_full_of_expired_requests_is_compacted() -> None:
    broker, router = make_router()
    requester = FakePeer(1)
    responder = router.add_responder(FakePeer(2), 1, "svc")
    for i in range(1000):
        send(router, requester, "svc", timeout=1.0, now=float(i))
        broker.on_time(float(i) + 1.0)
    assert len(responder.outbox) <= 64 + 1
    assert router.snapshot().pending == 0


# ------------------------------------------------------------ going away


def test_responder_disconnecting_fails_what_it_holds_at_once() -> None:
    broker, router = make_router()
    requester, responder_peer = FakePeer(1), FakePeer(2)
    responder = router.add_responder(responder_peer, 1, "svc")
    token, rid = send(router, requester, "svc")
    delivered(responder)
    router.disconnect(responder_peer, now=0.0)
    assert isinstance(requester.rejected[token], ResponderGone)
    assert router.snapshot() == router.snapshot().__class__(responders=0, subjects=0, pending=0)
    assert len(broker.timers) == 0
    assert router.reply(responder_peer, rid, b"x", None, None, 0.0) is False
    assert router.stats.outcomes["responder_gone"] == 1


def test_unsubscribing_fails_what_the_responder_holds() -> None:
    _, router = make_router()
    requester, responder_peer = FakePeer(1), FakePeer(2)
    responder = router.add_responder(responder_peer, 1, "svc")
    token, _ = send(router, requester, "svc")
    delivered(responder)
    responder.cancel(0.0)
    assert isinstance(requester.rejected[token], ResponderGone)
    assert router.responder_count("svc") == 0
    with pytest.raises(NoResponders):
        send(router, requester, "svc")


def test_requests_a_leaving_responder_never_saw_go_to_another_one() -> None:
    _, router = make_router()
    requester = FakePeer(1)
    first_peer, second_peer = FakePeer(2), FakePeer(3)
    first = router.add_responder(first_peer, 1, "svc")
    second = router.add_responder(second_peer, 1, "svc")
    sent = [send(router, requester, "svc", body=bytes([i])) for i in range(4)]
    # Round robin: 0 and 2 went to the first responder, which never drained them.
    router.disconnect(first_peer, now=0.0)
    assert not requester.rejected
    rids = delivered(second)
    assert sorted(rids) == sorted(rid for _, rid in sent)
    for rid in rids:
        assert router.reply(second_peer, rid, b"ok", None, None, 0.0)
    assert len(requester.resolved) == 4
    assert router.stats.rerouted == 2
    assert first.outbox == type(first.outbox)()


def test_unseen_requests_fail_when_no_responder_is_left() -> None:
    _, router = make_router()
    requester, responder_peer = FakePeer(1), FakePeer(2)
    router.add_responder(responder_peer, 1, "svc")
    token, _ = send(router, requester, "svc")
    router.disconnect(responder_peer, now=0.0)
    assert isinstance(requester.rejected[token], ResponderGone)


def test_requester_disconnecting_leaves_nothing_behind() -> None:
    broker, router = make_router()
    requester, responder_peer = FakePeer(1), FakePeer(2)
    responder = router.add_responder(responder_peer, 1, "svc")
    held = [send(router, requester, "svc") for _ in range(3)]
    delivered(responder)
    queued = [send(router, requester, "svc") for _ in range(2)]
    router.disconnect(requester, now=0.0)

    assert router.snapshot().pending == 0
    assert list(router.pending_rids()) == []
    assert len(broker.timers) == 0
    assert responder.held == {}
    assert delivered(responder) == [], "abandoned requests are not pushed any more"
    for _, rid in held + queued:
        assert router.reply(responder_peer, rid, b"x", None, None, 0.0) is False
    assert router.stats.replies_dropped == 5
    assert router.stats.outcomes["abandoned"] == 5
    assert not requester.resolved and not requester.rejected
    assert router.responder_count() == 1, "the responder itself is unaffected"


def test_abandoning_one_request_ends_it_alone() -> None:
    """An HTTP client that left: its request ends, the others of the same peer stay."""
    broker, router = make_router()
    requester, responder_peer = FakePeer(1), FakePeer(2)
    responder = router.add_responder(responder_peer, 1, "svc")
    _, held = send(router, requester, "svc")
    delivered(responder)
    _, queued = send(router, requester, "svc")
    _, kept = send(router, requester, "svc")
    router.abandon(held)
    router.abandon(queued)
    router.abandon(held)  # twice, or after it ended: nothing happens

    assert list(router.pending_rids()) == [kept]
    assert responder.held == {}
    assert delivered(responder) == [kept], "the abandoned queued request is never pushed"
    assert router.reply(responder_peer, held, b"late", None, None, 0.0) is False
    assert router.stats.outcomes["abandoned"] == 2
    assert not requester.resolved and not requester.rejected
    router.abandon(kept)
    assert len(broker.timers) == 0, "no deadline stays armed"


def test_subjects_show_responders_groups_and_pending_requests() -> None:
    _, router = make_router()
    requester, a, b = FakePeer(1), FakePeer(2), FakePeer(3)
    first = router.add_responder(a, 1, "svc.a", group="workers")
    router.add_responder(b, 1, "svc.a", group="workers")
    router.add_responder(b, 2, "svc.a")
    router.add_responder(b, 3, "svc.b")
    send(router, requester, "svc.a", now=1.0)
    delivered(first)
    send(router, requester, "svc.a", now=2.0)
    send(router, requester, "svc.a", now=3.0)

    svc_a, svc_b = router.subjects(now=4.0)
    assert (svc_a.subject, svc_a.responders, svc_a.groups) == ("svc.a", 3, ["workers"])
    assert (svc_a.held, svc_a.queued, svc_a.oldest_seconds) == (1, 2, 3.0)
    assert (svc_b.subject, svc_b.responders, svc_b.queued, svc_b.held) == ("svc.b", 1, 0, 0)
    assert svc_b.oldest_seconds == 0.0


def test_a_connection_that_is_both_requester_and_responder_can_leave() -> None:
    broker, router = make_router()
    peer = FakePeer(1)
    responder = router.add_responder(peer, 1, "svc")
    send(router, peer, "svc")
    delivered(responder)
    send(router, peer, "svc")
    router.disconnect(peer, now=0.0)
    assert router.snapshot().pending == 0
    assert len(broker.timers) == 0
    assert router.responder_count() == 0
    assert not peer.rejected, "nobody is told: the requester is the one that left"


# ----------------------------------------------------------- correlation


def test_only_the_connection_a_request_was_pushed_to_may_answer_it() -> None:
    _, router = make_router()
    requester, owner, other = FakePeer(1), FakePeer(2), FakePeer(3)
    responder = router.add_responder(owner, 1, "svc")
    router.add_responder(other, 1, "other")
    token, rid = send(router, requester, "svc")
    delivered(responder)
    assert router.reply(other, rid, b"forged", None, None, 0.0) is False
    assert router.reply(owner, rid + 1000, b"guess", None, None, 0.0) is False
    assert not requester.resolved
    assert router.reply(owner, rid, b"real", None, None, 0.0) is True
    assert requester.resolved[token].body == b"real"
    assert router.reply(owner, rid, b"again", None, None, 0.0) is False, "answered once only"


def test_a_request_cannot_be_answered_before_it_is_pushed() -> None:
    _, router = make_router()
    requester, owner = FakePeer(1), FakePeer(2)
    router.add_responder(owner, 1, "svc")
    _, rid = send(router, requester, "svc")
    assert router.reply(owner, rid, b"too early", None, None, 0.0) is False


def test_rids_are_unique_across_namespaces() -> None:
    broker = Broker()
    a, b = broker.namespace("a").rpc, broker.namespace("b").rpc
    a.add_responder(FakePeer(2), 1, "svc")
    b.add_responder(FakePeer(3), 1, "svc")
    rids = {send(router, FakePeer(1), "svc")[1] for router in (a, b, a, b)}
    assert len(rids) == 4


# ---------------------------------------------------------------- routing


def _route_counts(
    router: RequestRouter, responders: dict[str, Responder], n: int
) -> dict[str, int]:
    requester = FakePeer(99)
    for _ in range(n):
        send(router, requester, "svc")
    return {name: len(delivered(r)) for name, r in responders.items()}


def test_round_robin_over_responders_without_groups() -> None:
    _, router = make_router()
    responders = {f"r{i}": router.add_responder(FakePeer(i + 10), 1, "svc") for i in range(3)}
    assert _route_counts(router, responders, 300) == {"r0": 100, "r1": 100, "r2": 100}


def test_each_group_gets_an_equal_share_and_members_take_turns() -> None:
    _, router = make_router()
    responders = {
        "a1": router.add_responder(FakePeer(1), 1, "svc", group="a"),
        "a2": router.add_responder(FakePeer(2), 1, "svc", group="a"),
        "a3": router.add_responder(FakePeer(3), 1, "svc", group="a"),
        "b1": router.add_responder(FakePeer(4), 1, "svc", group="b"),
        "solo": router.add_responder(FakePeer(5), 1, "svc"),
    }
    counts = _route_counts(router, responders, 300)
    assert counts == {"a1": 33 + 1, "a2": 33, "a3": 33, "b1": 100, "solo": 100}


def test_subjects_are_matched_exactly() -> None:
    _, router = make_router()
    responder = router.add_responder(FakePeer(2), 1, "svc.echo")
    with pytest.raises(NoResponders):
        send(router, FakePeer(1), "svc")
    with pytest.raises(NoResponders):
        send(router, FakePeer(1), "svc.echo.more")
    assert delivered(responder) == []


# --------------------------------------------------------------- batching


def test_take_fills_one_frame_within_the_budget_but_always_takes_one() -> None:
    _, router = make_router()
    requester = FakePeer(1)
    responder = router.add_responder(FakePeer(2), 1, "svc")
    for _ in range(10):
        send(router, requester, "svc", body=b"x" * 1000)
    first = responder.take(2500)
    assert len(first) == 2
    assert responder.has_queued()
    assert len(responder.take(10)) == 1, "at least one request per frame, however big"
    assert len(responder.take(1 << 20)) == 7
    assert not responder.has_queued()


# ------------------------------------------------------------- lifecycle


def test_destroy_fails_every_waiting_request() -> None:
    broker, router = make_router()
    requester = FakePeer(1)
    router.add_responder(FakePeer(2), 1, "svc")
    token, _ = send(router, requester, "svc")
    broker.drop_namespace("test")
    assert isinstance(requester.rejected[token], ResponderGone)
    assert len(broker.timers) == 0


def test_close_disarms_every_deadline() -> None:
    broker, router = make_router()
    router.add_responder(FakePeer(2), 1, "svc")
    send(router, FakePeer(1), "svc")
    broker.close()
    assert len(broker.timers) == 0
    assert router.snapshot().pending == 0


def test_latency_label_set_is_bounded() -> None:
    _, router = make_router()
    for i in range(MAX_TRACKED_SUBJECTS + 50):
        router.stats.observe(f"svc.s{i}", 0.001)
    assert len(router.stats.latency) == MAX_TRACKED_SUBJECTS + 1
    assert router.stats.latency[OTHER_SUBJECT].count == 50


def test_deadline_entries_of_answered_requests_do_not_pile_up() -> None:
    broker, router = make_router()
    requester, responder_peer = FakePeer(1), FakePeer(2)
    responder = router.add_responder(responder_peer, 1, "svc")
    token, _ = send(router, requester, "svc", timeout=60.0)  # stays pending throughout
    for i in range(10_000):
        _, rid = send(router, requester, "svc", timeout=30.0, now=i * 0.001)
        delivered(responder)
        router.reply(responder_peer, rid, b"", None, None, i * 0.001)
    assert router.snapshot().pending == 1
    assert len(router._deadlines) <= 65
    assert len(broker.timers) == 1
    broker.on_time(60.0)
    assert isinstance(requester.rejected[token], Timeout)
    assert len(broker.timers) == 0
    assert router._deadlines == []
