"""Request/reply: responders, pending requests and their deadlines (sans-I/O).

A *responder* registers for a subject; a *request* to that subject goes to
exactly one responder, and that responder's reply goes back to the one
requester that asked. The core holds, for every request still waiting, who
asked (the requester's ``Peer`` and the token of its parked request), who was
given the request, and its deadline. Everything ends in one of
these ways, each counted in :class:`~minibroker.core.rpc_stats.RpcStats`:

=================  ====================================================
``ok``             the responder replied; the requester gets the body
``error``          the responder replied with an error message; the
                   requester gets ``responder_error``
``timeout``        the deadline passed first; the request is forgotten
``no_responders``  nobody was registered for the subject (immediately)
``responder_gone`` the responder holding it disconnected or unsubscribed
``abandoned``      the requester gave up first: it disconnected, or
                   withdrew the request (``withdraw``: a cancelled call)
``unread``         the responder replied, but the requester was not
                   reading: its connection held more unsent output than
                   a reply may be added to (``Requester.takes_reply``).
                   The reply is dropped (counted in ``replies_dropped``,
                   the responder told ``False``) and the requester gets a
                   small ``limit_exceeded`` instead
=================  ====================================================

Once a request has ended, its id (``rid``) is forgotten: a reply that comes
later finds nothing and is dropped and counted (``replies_dropped``), and the
responder is told ``False`` ("not delivered") rather than an error, so a
responder loop that was merely slow never breaks (NATS and RabbitMQ's direct
reply-to drop such replies silently too).

Routing
-------

Responders of one subject are arranged in *pools*, one pool per group name;
responders registered without a group form the default pool. A request picks
the next pool in turn, then the next member of that pool in turn: two-level
round robin. So every pool gets an equal share of the requests however many
members it has, and members of a pool share their pool's share evenly. With
no groups at all this is plain round robin over all responders. (NATS's
queue groups deliver to one member *per group*; a request/reply call needs
exactly one answer, so here a group decides the share, not the fan-out.)

Correlation
-----------

Request ids are unique in the process (so in the broker), assigned by the
broker, never by clients, and a reply is accepted only from the connection
the request was pushed to. Replies therefore cannot be crossed, and a
responder cannot answer (or guess) another responder's requests.

Delivery and backpressure
-------------------------

A routed request waits in its responder's *outbox* until the responder's
connection can write; the connection then drains the outbox within a byte
budget (many requests per ``req`` frame when many are waiting) and the
requests move to the responder's *held* set. If a responder goes away,
requests it already received fail with ``responder_gone``; those still in its
outbox were never seen by anyone, so they are handed to another responder of
the subject when there is one (``rerouted``), and fail with
``responder_gone`` only when there is none.

Deadlines
---------

The router keeps its own min-heap of ``(deadline, rid)`` tuples and arms a
single broker timer (``Timers.call_at``) for the earliest one. A request
that ends is simply deleted from the pending table; its heap entry stays
behind and is skipped when it surfaces (lazy deletion, compacted when dead
entries dominate, dropped at once when nothing is pending). Compared with
one broker ``Timer`` per request this costs a tuple push compared in C
instead of a dataclass heap entry compared in Python, and, more important,
nothing in the timer heap refers to the request: a reply frees the request
and its body at once, instead of when its deadline would have passed.

Cost per request: one dict insert for the pending table, one heap push, one
append to the responder's outbox; the reply costs one dict pop and a
``resolve`` on the requester's peer. Nothing is scanned.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final, NamedTuple

from minibroker.core.durations import check_seconds
from minibroker.core.names import SUBJECT, check_name
from minibroker.core.peer import Peer, Requester
from minibroker.core.rpc_stats import RpcStats
from minibroker.core.sizes import headers_size, utf8_length
from minibroker.core.timers import Timer
from minibroker.errors import (
    BrokerError,
    LimitExceeded,
    NoResponders,
    RequestCancelled,
    ResponderError,
    ResponderGone,
    Timeout,
    TooLarge,
)
from minibroker.value_class import Value

if TYPE_CHECKING:
    from minibroker.core.namespace import Namespace

__all__ = ["RequestRouter", "Responder", "RpcReply", "RpcSnapshot", "request_size"]

#: Bytes counted per request on top of its body, subject and headers when
#: filling a ``req`` frame: the map and its five keys (34 bytes), rid and
#: timeout (9 each) and the msgpack headers of subject, body and the headers
#: map (5 each) at their widest. An upper bound, because the budget it is
#: counted against keeps the frame within the connection's frame limit.
REQUEST_OVERHEAD: Final = 72
#: Bytes of a reply in its requester's ``ok`` result besides body and
#: headers: the map, its two keys and the msgpack headers of the values.
REPLY_OVERHEAD: Final = 32

_QUEUED: Final = 0  # in a responder's outbox, not sent yet
_HELD: Final = 1  # sent to the responder, waiting for its reply
_DONE: Final = 2  # ended; left in an outbox only until the outbox is drained

#: Request ids, unique across every broker in this process.
_rids = itertools.count(1)


def request_size(subject: str, body: bytes, headers: dict[str, str] | None) -> int:
    """Bytes one request takes in a ``req`` push, at most (see ``REQUEST_OVERHEAD``)."""
    return REQUEST_OVERHEAD + len(body) + utf8_length(subject) + headers_size(headers)


def reply_size(body: bytes, headers: dict[str, str] | None) -> int:
    """Bytes a reply takes in the requester's ``ok`` result, at most (see ``REPLY_OVERHEAD``)."""
    return REPLY_OVERHEAD + len(body) + headers_size(headers)


class RpcReply(NamedTuple):
    """What a requester's parked request is resolved with."""

    body: bytes
    headers: dict[str, str] | None


class RpcSnapshot(Value, frozen=True):
    """A point-in-time view of one namespace's request/reply state (tests, metrics)."""

    responders: int
    subjects: int
    pending: int


class SubjectSnapshot(Value, frozen=True):
    """One subject's responders and the requests pending on it (the dashboard)."""

    subject: str
    #: Registered responders, over every group.
    responders: int
    #: The named groups sharing the subject (responders without one take turns
    #: as a group of their own).
    groups: list[str]
    #: Requests routed to a responder but not yet written to it.
    queued: int
    #: Requests a responder has received and owes a reply for.
    held: int
    #: Seconds the oldest pending request has waited (0 with none pending).
    oldest_seconds: float


class _Pending:
    """One request between its arrival and its end."""

    __slots__ = (
        "body",
        "headers",
        "requester",
        "responder",
        "rid",
        "size",
        "started",
        "state",
        "subject",
        "timeout",
        "token",
    )

    def __init__(
        self,
        rid: int,
        requester: Requester,
        token: int,
        subject: str,
        body: bytes,
        headers: dict[str, str] | None,
        timeout: float,
        started: float,
        size: int,
    ) -> None:
        self.rid = rid
        #: Its ``request_size``, counted once when it arrived.
        self.size = size
        self.requester = requester
        self.token = token
        self.subject = subject
        self.body = body
        self.headers = headers
        self.timeout = timeout
        self.started = started
        self.state = _QUEUED
        self.responder: Responder | None = None


class Responder:
    """One ``respond`` registration: a push source of requests for one connection.

    ``outbox`` holds routed requests not yet written to the connection (ended
    ones are skipped lazily when drained); ``held`` those the responder has
    received and owes a reply for.
    """

    __slots__ = ("_live_queued", "_router", "group", "held", "outbox", "peer", "sub_id", "subject")

    def __init__(
        self, router: RequestRouter, peer: Peer, sub_id: int, subject: str, group: str | None
    ) -> None:
        self._router = router
        self.peer = peer
        self.sub_id = sub_id
        self.subject = subject
        self.group = group
        self.outbox: deque[_Pending] = deque()
        self.held: dict[int, _Pending] = {}
        self._live_queued = 0

    # ------------------------------------------------------- PushSource port

    def cancel(self, now: float) -> None:
        """The client unsubscribed: fail what it holds, reroute what it never saw."""
        self._router._remove_responder(self, ResponderGone("the responder unsubscribed"))

    # --------------------------------------------------------------- outbox

    def _enqueue(self, pending: _Pending) -> None:
        pending.responder = self
        pending.state = _QUEUED
        self.outbox.append(pending)
        self._live_queued += 1
        self.peer.push_ready(self)

    def _forget_queued(self) -> None:
        """A queued request ended before being sent; compact if mostly dead."""
        self._live_queued -= 1
        if len(self.outbox) > 64 and len(self.outbox) > 4 * self._live_queued:
            self.outbox = deque(p for p in self.outbox if p.state == _QUEUED)

    def take(self, max_bytes: int) -> list[tuple[int, str, bytes, dict[str, str] | None, float]]:
        """Move queued requests to ``held``, within ``max_bytes`` (at least one).

        Sizes are counted with :func:`request_size`, an upper bound of their
        encoding, so a batch never passes ``max_bytes`` unless it is a single
        request bigger than that alone.

        Returns ``(rid, subject, body, headers, timeout)`` for each, in arrival
        order, for the protocol layer to encode.
        """
        taken: list[tuple[int, str, bytes, dict[str, str] | None, float]] = []
        outbox = self.outbox
        held = self.held
        budget = max_bytes
        while outbox:
            pending = outbox[0]
            if pending.state != _QUEUED:
                outbox.popleft()
                continue
            size = pending.size
            if taken and size > budget:
                break
            outbox.popleft()
            budget -= size
            pending.state = _HELD
            held[pending.rid] = pending
            taken.append(
                (pending.rid, pending.subject, pending.body, pending.headers, pending.timeout)
            )
        self._live_queued -= len(taken)
        return taken

    def has_queued(self) -> bool:
        """True while some live request still waits to be sent."""
        return self._live_queued > 0


class _Pool:
    """The responders of one subject sharing one group name, taking turns."""

    __slots__ = ("cursor", "members")

    def __init__(self) -> None:
        self.members: list[Responder] = []
        self.cursor = 0

    def pick(self) -> Responder:
        members = self.members
        index = self.cursor
        if index >= len(members):
            index = 0
        self.cursor = index + 1
        return members[index]


class _Route:
    """Every responder of one subject: its pools, taken in turn."""

    __slots__ = ("cursor", "pools", "turns")

    def __init__(self) -> None:
        self.pools: dict[str | None, _Pool] = {}
        self.turns: list[_Pool] = []
        self.cursor = 0

    def pick(self) -> Responder:
        turns = self.turns
        index = self.cursor
        if index >= len(turns):
            index = 0
        self.cursor = index + 1
        return turns[index].pick()

    def add(self, responder: Responder) -> None:
        pool = self.pools.get(responder.group)
        if pool is None:
            pool = self.pools[responder.group] = _Pool()
            self.turns.append(pool)
        pool.members.append(responder)

    def remove(self, responder: Responder) -> bool:
        """Drop ``responder``; returns True when the route is now empty."""
        pool = self.pools.get(responder.group)
        if pool is None or responder not in pool.members:
            return not self.turns
        pool.members.remove(responder)
        if not pool.members:
            del self.pools[responder.group]
            self.turns.remove(pool)
        return not self.turns


class RequestRouter:
    """The request/reply model of one namespace."""

    def __init__(self, namespace: Namespace) -> None:
        self.namespace = namespace
        self._timers = namespace.broker.timers
        self._limits = namespace.broker.config.limits
        self._routes: dict[str, _Route] = {}
        #: rid -> pending request, for every request that has not ended.
        self._pending: dict[int, _Pending] = {}
        #: requester conn_id -> token -> its pending request (to clean up on
        #: disconnect, and to find a request its requester withdraws).
        self._by_requester: dict[int, dict[int, _Pending]] = {}
        #: responder conn_id -> sub_id -> responder.
        self._by_responder_peer: dict[int, dict[int, Responder]] = {}
        #: (deadline, rid) min-heap; entries of ended requests are skipped lazily.
        self._deadlines: list[tuple[float, int]] = []
        #: The one broker timer armed for the earliest deadline, and when.
        self._timer: Timer | None = None
        self._timer_at = math.inf
        self.stats = RpcStats()

    # ------------------------------------------------------------ responders

    def add_responder(
        self, peer: Peer, sub_id: int, subject: str, group: str | None = None
    ) -> Responder:
        """Register ``peer``'s subscription ``sub_id`` as a responder for ``subject``."""
        check_name(SUBJECT, subject)
        if group is not None:
            check_name("group", group)
        responder = Responder(self, peer, sub_id, subject, group)
        route = self._routes.get(subject)
        if route is None:
            route = self._routes[subject] = _Route()
        route.add(responder)
        self._by_responder_peer.setdefault(peer.conn_id, {})[sub_id] = responder
        return responder

    def _remove_responder(self, responder: Responder, error: BrokerError) -> None:
        route = self._routes.get(responder.subject)
        if route is not None and route.remove(responder):
            del self._routes[responder.subject]
        by_peer = self._by_responder_peer.get(responder.peer.conn_id)
        if by_peer is not None and by_peer.get(responder.sub_id) is responder:
            del by_peer[responder.sub_id]
            if not by_peer:
                del self._by_responder_peer[responder.peer.conn_id]
        held = list(responder.held.values())
        responder.held.clear()
        for pending in held:
            self._fail(pending, "responder_gone", error)
        queued = [p for p in responder.outbox if p.state == _QUEUED]
        responder.outbox.clear()
        responder._live_queued = 0
        route = self._routes.get(responder.subject)
        for pending in queued:
            if route is not None:
                self.stats.rerouted += 1
                route.pick()._enqueue(pending)
            else:
                self._fail(pending, "responder_gone", error)

    # -------------------------------------------------------------- requests

    def request(
        self,
        requester: Requester,
        token: int,
        subject: str,
        body: bytes,
        headers: dict[str, str] | None,
        timeout: float,
        now: float,
    ) -> int:
        """Route a request; the requester's ``token`` is finished later. Returns the rid.

        Raises (and changes nothing) for a bad subject or timeout, a body over
        the size limit, or ``NoResponders`` when nobody serves ``subject``.
        """
        route = self._routes.get(subject)
        if route is None:
            check_name(SUBJECT, subject)  # a bad name is invalid_name, not no_responders
            self.stats.outcomes["no_responders"] += 1
            raise NoResponders(f"no responders for subject {subject!r}", subject=subject)
        limits = self._limits
        check_seconds("timeout", timeout, limits.max_wait_seconds)
        if len(body) > limits.max_message_bytes:
            raise TooLarge(
                f"request body of {len(body)} bytes exceeds the limit of "
                f"{limits.max_message_bytes} bytes",
                limit=limits.max_message_bytes,
            )
        max_item = limits.max_item_bytes
        size = request_size(subject, body, headers)
        if max_item is not None and size > max_item:
            # Routed, it would end the responder it reached: no frame could
            # carry it. The requester hears why, and responders stay.
            raise TooLarge(
                f"the request would take {size} bytes in a "
                f"'req' push with its subject and headers; one frame holds {max_item}",
                limit=max_item,
            )
        rid = next(_rids)
        pending = _Pending(rid, requester, token, subject, body, headers, timeout, now, size)
        self._pending[rid] = pending
        deadline = now + timeout
        heapq.heappush(self._deadlines, (deadline, rid))
        if deadline < self._timer_at:
            self._arm(deadline)
        mine = self._by_requester.get(requester.conn_id)
        if mine is None:
            mine = self._by_requester[requester.conn_id] = {}
        mine[token] = pending
        route.pick()._enqueue(pending)
        return rid

    def reply(
        self,
        responder_peer: Peer,
        rid: int,
        body: bytes,
        headers: dict[str, str] | None,
        error: str | None,
        now: float,
    ) -> bool:
        """A responder answers ``rid``. Returns False (and counts it) if nobody waits,
        or if the requester is not reading (its reply is then dropped; see ``unread``).

        Only the connection the request was pushed to may answer it; a reply
        from anywhere else is treated like a late one. ``error`` (a message)
        fails the request with ``responder_error`` instead of replying.
        """
        if error is None and len(body) > self._limits.max_message_bytes:
            raise TooLarge(
                f"reply body of {len(body)} bytes exceeds the limit of "
                f"{self._limits.max_message_bytes} bytes",
                limit=self._limits.max_message_bytes,
            )
        max_item = self._limits.max_item_bytes
        if error is None and max_item is not None and reply_size(body, headers) > max_item:
            # Refused to the responder, which may answer again (smaller, or an
            # error): passed on, it would reach the requester as too_large.
            raise TooLarge(
                f"the reply would take {reply_size(body, headers)} bytes with its headers; "
                f"one frame holds {max_item}",
                limit=max_item,
            )
        pending = self._pending.get(rid)
        if (
            pending is None
            or pending.state != _HELD
            or pending.responder is None
            or pending.responder.peer is not responder_peer
        ):
            self.stats.replies_dropped += 1
            return False
        del pending.responder.held[rid]
        self._end(pending)
        stats = self.stats
        requester = pending.requester
        if not requester.takes_reply():
            # The requester is not reading (docs/request-reply.md, "A
            # requester that stops reading"): the reply, up to
            # max_message_bytes, is not added to its output; the request
            # ends with an error frame of a hundred bytes instead.
            stats.replies_dropped += 1
            stats.outcomes["unread"] += 1
            requester.reject(
                pending.token,
                LimitExceeded(
                    f"the reply to the request on {pending.subject!r} was dropped: "
                    "this connection was not reading its answers",
                    subject=pending.subject,
                ),
            )
            return False
        stats.observe(pending.subject, now - pending.started)
        if error is None:
            stats.outcomes["ok"] += 1
            pending.requester.resolve(pending.token, RpcReply(body, headers))
        else:
            stats.outcomes["error"] += 1
            pending.requester.reject(pending.token, ResponderError(error, subject=pending.subject))
        return True

    def abandon(self, rid: int) -> None:
        """The requester of ``rid`` is gone (an HTTP client that left): end the
        request now, as its connection closing would. A responder that holds
        it may still reply; the reply is dropped, as a late one is."""
        pending = self._pending.get(rid)
        if pending is None:
            return
        self._release_from_responder(pending)
        self._end(pending)
        self.stats.outcomes["abandoned"] += 1

    def withdraw(self, requester: Peer, token: int) -> bool:
        """The requester gave up on its request parked with ``token`` (its call
        was cancelled): end it now and answer it with ``cancelled``, instead
        of keeping it, and maybe a responder busy on it, until its deadline.

        A request still in a responder's outbox is never written to it; one a
        responder holds ends for it as a late one does (its reply is dropped
        and counted). Counted as ``abandoned``, like a requester that left.
        Returns False when ``token`` names no request of ``requester`` that is
        still waiting (it ended already, or it is not a request). One dict
        lookup: a cancel scope may withdraw thousands of calls at once.
        """
        mine = self._by_requester.get(requester.conn_id)
        pending = None if mine is None else mine.get(token)
        if pending is None:
            return False
        self._release_from_responder(pending)
        self._end(pending)
        self.stats.outcomes["abandoned"] += 1
        requester.reject(
            token,
            RequestCancelled(
                f"the request on {pending.subject!r} was withdrawn by its requester",
                subject=pending.subject,
            ),
        )
        return True

    # ------------------------------------------------------------- deadlines

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timers.call_at(deadline, self._on_deadline)
        self._timer_at = deadline

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf

    def _on_deadline(self, now: float) -> None:
        """The armed timer fired: expire every request due, re-arm for the next."""
        self._timer = None
        self._timer_at = math.inf
        pending = self._pending
        # Expiring ends requests, which may compact or clear the heap: re-read it.
        while self._deadlines and self._deadlines[0][0] <= now:
            expired = pending.get(heapq.heappop(self._deadlines)[1])
            if expired is not None:
                self._expire(expired)
        heap = self._deadlines
        while heap and heap[0][1] not in pending:
            heapq.heappop(heap)
        if heap:
            self._arm(heap[0][0])

    def _compact_deadlines(self) -> None:
        """Drop the entries of ended requests once they are most of the heap."""
        pending = self._pending
        self._deadlines = [entry for entry in self._deadlines if entry[1] in pending]
        heapq.heapify(self._deadlines)

    def _expire(self, pending: _Pending) -> None:
        """The deadline passed before a reply: the requester gets ``timeout``."""
        self._fail(
            pending,
            "timeout",
            Timeout(
                f"no reply to the request on {pending.subject!r} within "
                f"{_seconds(pending.timeout)}",
                subject=pending.subject,
                timeout=pending.timeout,
            ),
        )

    def _fail(self, pending: _Pending, outcome: str, error: BrokerError) -> None:
        self._release_from_responder(pending)
        self._end(pending)
        self.stats.outcomes[outcome] += 1
        pending.requester.reject(pending.token, error)

    def _release_from_responder(self, pending: _Pending) -> None:
        responder = pending.responder
        if responder is None:
            return
        if pending.state == _HELD:
            responder.held.pop(pending.rid, None)
        elif pending.state == _QUEUED:
            pending.state = _DONE
            responder._forget_queued()

    def _end(self, pending: _Pending) -> None:
        """Forget ``pending`` everywhere but the responder (the caller handles that)."""
        pending.state = _DONE
        all_pending = self._pending
        del all_pending[pending.rid]
        mine = self._by_requester.get(pending.requester.conn_id)
        if mine is not None:
            mine.pop(pending.token, None)
            if not mine:
                del self._by_requester[pending.requester.conn_id]
        if not all_pending:
            # Idle: nothing armed, nothing held (the usual state between calls).
            self._deadlines.clear()
            self._disarm()
        elif len(self._deadlines) > 64 and len(self._deadlines) > 4 * len(all_pending):
            self._compact_deadlines()

    # -------------------------------------------------------- Model protocol

    def disconnect(self, peer: Peer, now: float) -> None:
        """Forget ``peer``'s requests (abandoned) and responders (their requests fail)."""
        mine = self._by_requester.pop(peer.conn_id, None)
        if mine:
            for pending in list(mine.values()):
                self._release_from_responder(pending)
                self._end(pending)
                self.stats.outcomes["abandoned"] += 1
        responders = self._by_responder_peer.get(peer.conn_id)
        if responders:
            error = ResponderGone("the responder disconnected before replying")
            for responder in list(responders.values()):
                self._remove_responder(responder, error)

    def sync(self) -> None:
        """Nothing durable here."""

    def close(self) -> None:
        """Broker shutdown: disarm every deadline (sessions already failed their requests)."""
        for pending in list(self._pending.values()):
            self._release_from_responder(pending)
            self._end(pending)

    def destroy(self) -> None:
        """Namespace dropped: fail every waiting request and forget every responder."""
        for pending in list(self._pending.values()):
            self._fail(pending, "responder_gone", ResponderGone("the namespace was dropped"))
        self._routes.clear()
        self._by_responder_peer.clear()

    # ------------------------------------------------------------ inspection

    def snapshot(self) -> RpcSnapshot:
        return RpcSnapshot(
            responders=sum(len(r) for r in self._by_responder_peer.values()),
            subjects=len(self._routes),
            pending=len(self._pending),
        )

    def subjects(self, now: float) -> list[SubjectSnapshot]:
        """Every subject with a responder or a pending request, by name.

        One pass over the pending requests: meant for an inspection now and
        then (a dashboard refreshing once a second), not for the hot path.
        """
        counts: dict[str, list[float]] = {}  # subject -> [queued, held, oldest start]
        for pending in self._pending.values():
            entry = counts.get(pending.subject)
            if entry is None:
                entry = counts[pending.subject] = [0, 0, pending.started]
            entry[1 if pending.state == _HELD else 0] += 1
            entry[2] = min(entry[2], pending.started)
        snapshots = []
        for subject in sorted(self._routes.keys() | counts.keys()):
            route = self._routes.get(subject)
            queued, held, oldest = counts.get(subject, (0, 0, now))
            snapshots.append(
                SubjectSnapshot(
                    subject=subject,
                    responders=0 if route is None else sum(len(p.members) for p in route.turns),
                    groups=[] if route is None else sorted(g for g in route.pools if g is not None),
                    queued=int(queued),
                    held=int(held),
                    oldest_seconds=max(0.0, now - oldest),
                )
            )
        return snapshots

    def responder_count(self, subject: str | None = None) -> int:
        """Registered responders, of ``subject`` or of every subject."""
        if subject is None:
            return sum(len(r) for r in self._by_responder_peer.values())
        route = self._routes.get(subject)
        return 0 if route is None else sum(len(p.members) for p in route.turns)

    def pending_rids(self) -> Iterator[int]:
        """The ids of every request that has not ended (tests: nothing leaks)."""
        return iter(list(self._pending))


def _seconds(value: float) -> str:
    if math.isfinite(value) and value < 1:
        return f"{value * 1000:g} ms"
    return f"{value:g} s"
