"""Kafka's classic consumer-group protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup.

The broker never assigns partitions itself. Members send the assignment
strategies they support with opaque metadata; the broker picks one strategy
all of them support, makes one member the leader, gives the leader everyone's
metadata, and relays the assignment the leader computes to each member. So
range, roundrobin, sticky and cooperative-sticky all work unchanged: they
run in the clients.

A group moves through Kafka's states:

* **Empty**: no members;
* **PreparingRebalance**: a member joined, left or timed out; every member
  must (re)send JoinGroup. Members learn about it from a Heartbeat answer
  (REBALANCE_IN_PROGRESS). The round ends when every known member has
  joined, or at the rebalance timeout, which drops the ones that did not.
  A lone member's join therefore completes at once: there is no initial
  rebalance delay (Kafka waits 3 s by default), which is what makes a group
  join take milliseconds in tests instead of seconds;
* **CompletingRebalance**: the join answers are out with a new generation;
  the followers wait in SyncGroup until the leader sends the assignment;
* **Stable**: everyone has an assignment; heartbeats keep each member's
  session alive, and a session that runs out removes that member.

Static members (KIP-345, ``group.instance.id``) are mapped by instance id
to the member id holding it. A new member with a known instance id is that
consumer restarted: it takes the old member's place (its assignment, and
the leadership if it had it), and the old member id is fenced: its
requests that name the instance get FENCED_INSTANCE_ID, as in Kafka.

Answers that have to wait (a JoinGroup until the round ends, a SyncGroup
until the leader's assignment) are callbacks; timers are the core's
(``Timers.call_at``), so Trio's MockClock drives them in tests. Pure logic:
no I/O, no clock of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from minibroker.core.timers import Timer, Timers

NONE: Final = 0
ILLEGAL_GENERATION: Final = 22
INCONSISTENT_GROUP_PROTOCOL: Final = 23
UNKNOWN_MEMBER_ID: Final = 25
INVALID_SESSION_TIMEOUT: Final = 26
REBALANCE_IN_PROGRESS: Final = 27
#: Kafka's answer past ``group.max.size``; here also past the namespace's group limit.
GROUP_MAX_SIZE_REACHED: Final = 81
FENCED_INSTANCE_ID: Final = 82

#: Session timeouts a member may ask for, in seconds (Kafka's broker defaults).
MIN_SESSION_TIMEOUT: Final = 0.1
MAX_SESSION_TIMEOUT: Final = 1800.0


class GroupState(Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"


@dataclass(frozen=True, slots=True)
class JoinResult:
    error: int
    generation: int = -1
    protocol: str | None = None
    leader: str = ""
    member_id: str = ""
    #: Every member's (id, group.instance.id or None, metadata for the chosen
    #: protocol): the leader's answer only.
    members: tuple[tuple[str, str | None, bytes], ...] = ()


JoinReply = Callable[[JoinResult], None]
#: ``(error, assignment)``.
SyncReply = Callable[[int, bytes], None]


@dataclass(slots=True)
class Member:
    member_id: str
    session_timeout: float
    rebalance_timeout: float
    protocols: dict[str, bytes]
    #: Strategy names in the member's order of preference.
    preference: list[str]
    join_reply: JoinReply | None = None
    sync_reply: SyncReply | None = None
    assignment: bytes = b""
    session_timer: Timer | None = None
    #: Who the member is, for DescribeGroups: its client id and address.
    client_id: str = ""
    client_host: str = ""
    #: Its ``group.instance.id`` (KIP-345), None for a dynamic member.
    instance_id: str | None = None
    #: The connection whose JoinGroup made this member and waits for its
    #: answer: until it is answered, the client does not know the member id.
    unnamed_on: object | None = None


@dataclass(slots=True)
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    rebalance_timer: Timer | None = None
    #: Static members: ``group.instance.id`` -> the member id holding it now.
    instances: dict[str, str] = field(default_factory=dict)


class GroupCoordinator:
    """The consumer groups of one namespace."""

    def __init__(self, timers: Timers, max_groups: int = 10_000) -> None:
        self._timers = timers
        self.groups: dict[str, Group] = {}
        #: Groups with members this coordinator keeps at most (the namespace's
        #: ``max_groups_per_namespace``): a JoinGroup for one more is refused.
        self.max_groups = max_groups
        self._member_ids = itertools.count(1)
        #: Members whose client does not know their id yet, by connection.
        self._unnamed: dict[object, dict[str, tuple[Group, Member]]] = {}
        #: The protocol type of groups forgotten when their last member left
        #: (``_emptied``), oldest first: Kafka keeps an empty group's protocol
        #: type while its offsets remain, and admin clients read it (a group
        #: of type "" is a "simple" one to confluent-kafka). At most
        #: ``max_groups`` are kept; one evicted reads as "" again.
        self._emptied_types: dict[str, str] = {}

    # ------------------------------------------------------------- join

    def join(
        self,
        group_id: str,
        member_id: str,
        client_id: str,
        session_timeout: float,
        rebalance_timeout: float,
        protocol_type: str,
        protocols: Sequence[tuple[str, bytes]],
        reply: JoinReply,
        now: float,
        client_host: str = "",
        instance_id: str | None = None,
        connection: object | None = None,
    ) -> None:
        """A member (re)joins; ``reply`` is called when the round it joined ends.

        A new dynamic member's ``connection`` is remembered until that answer:
        if it closes first, :meth:`connection_lost` removes the member, whose
        id its client never learnt (no LeaveGroup or Heartbeat can name it).

        A new member with the ``instance_id`` (``group.instance.id``) of one
        already in the group is that consumer restarted
        (:meth:`_rejoin_static`): clients send no LeaveGroup for a static
        member when they close, so without this the group would wait for
        the old incarnation's session to time out (45 s by default).
        """
        if not MIN_SESSION_TIMEOUT <= session_timeout <= MAX_SESSION_TIMEOUT:
            reply(JoinResult(INVALID_SESSION_TIMEOUT, member_id=member_id))
            return
        group = self.groups.get(group_id)
        if group is None:
            if len(self.groups) >= self.max_groups:
                reply(JoinResult(GROUP_MAX_SIZE_REACHED, member_id=member_id))
                return
            # Registered once a member is in it (below): a refused join must
            # leave no memberless group behind, which nothing would ever remove.
            group = Group(group_id)
        if not protocols or not self._compatible(group, member_id, protocol_type, protocols):
            reply(JoinResult(INCONSISTENT_GROUP_PROTOCOL, member_id=member_id))
            return
        if member_id:
            error = _check_member(group, member_id, instance_id)
            if error != NONE:
                reply(JoinResult(error, member_id=member_id))
                return
        member = Member(
            member_id or f"{client_id or 'member'}-{next(self._member_ids)}",
            session_timeout,
            rebalance_timeout,
            dict(protocols),
            [name for name, _ in protocols],
            join_reply=reply,
            client_id=client_id,
            client_host=client_host,
            instance_id=instance_id,
        )
        if not member_id and instance_id is not None and instance_id in group.instances:
            self._rejoin_static(group, member, now)
            return
        previous = group.members.get(member.member_id)
        if previous is not None:
            if previous.join_reply is not None:
                # A retried JoinGroup: the earlier request will never be read.
                previous.join_reply(JoinResult(REBALANCE_IN_PROGRESS, member_id=member.member_id))
            _cancel(previous.session_timer)
            member.assignment = previous.assignment
            member.instance_id = previous.instance_id  # fixed at the first join, as in Kafka
        group.members[member.member_id] = member
        self.groups[group_id] = group
        self._emptied_types.pop(group_id, None)
        if member.instance_id is not None:
            group.instances[member.instance_id] = member.member_id
        elif not member_id and connection is not None:
            member.unnamed_on = connection
            self._unnamed.setdefault(connection, {})[member.member_id] = (group, member)
        group.protocol_type = protocol_type
        if group.state is not GroupState.PREPARING_REBALANCE:
            self._prepare_rebalance(group, now)
        self._maybe_complete_join(group, now)

    def _rejoin_static(self, group: Group, member: Member, now: float) -> None:
        """A static member's new incarnation replaces the old one, as Kafka does.

        The old member id is fenced (its waiting JoinGroup or SyncGroup gets
        FENCED_INSTANCE_ID at once, its later requests too); the new id takes
        its place, its last assignment and the leadership if it had it. In a
        stable group, if the returning instance's subscription is the old
        one's and the strategy the group would choose is unchanged, no round
        runs: the join is answered at once in the current generation, with
        the leader as it was (so a returning leader does not compute an
        assignment nobody would receive), and the SyncGroup that follows
        hands over the kept assignment. Otherwise a round runs (or the one
        being prepared goes on) with the new member in it.
        """
        assert member.instance_id is not None
        old = group.members.pop(group.instances[member.instance_id])
        self._fence(old)
        member.assignment = old.assignment
        leader = group.leader
        if leader == old.member_id:
            group.leader = member.member_id
        group.members[member.member_id] = member
        group.instances[member.instance_id] = member.member_id
        if (
            group.state is GroupState.STABLE
            and group.protocol is not None
            and _choose_protocol(list(group.members.values())) == group.protocol
            and _same_subscription(
                group.protocol_type,
                old.protocols.get(group.protocol),
                member.protocols.get(group.protocol),
            )
        ):
            reply, member.join_reply = member.join_reply, None
            self._touch(group, member, now)
            assert reply is not None and leader is not None
            reply(JoinResult(NONE, group.generation, group.protocol, leader, member.member_id))
            return
        if group.state is not GroupState.PREPARING_REBALANCE:
            self._prepare_rebalance(group, now)
        self._maybe_complete_join(group, now)

    def _fence(self, old: Member) -> None:
        """Stop the replaced incarnation's timer and answer what it waits for."""
        _cancel(old.session_timer)
        if old.sync_reply is not None:
            old.sync_reply(FENCED_INSTANCE_ID, b"")
        if old.join_reply is not None:
            old.join_reply(JoinResult(FENCED_INSTANCE_ID, member_id=old.member_id))

    @staticmethod
    def _compatible(
        group: Group, member_id: str, protocol_type: str, protocols: Sequence[tuple[str, bytes]]
    ) -> bool:
        others = [m for m in group.members.values() if m.member_id != member_id]
        if not others:
            return True
        if protocol_type != group.protocol_type:
            return False
        names = {name for name, _ in protocols}
        return bool(names & _common(others))

    def _prepare_rebalance(self, group: Group, now: float) -> None:
        """Start a round: every member must rejoin; waiting syncs learn it at once."""
        group.state = GroupState.PREPARING_REBALANCE
        for member in group.members.values():
            if member.sync_reply is not None:
                reply, member.sync_reply = member.sync_reply, None
                reply(REBALANCE_IN_PROGRESS, b"")
        timeout = max((m.rebalance_timeout for m in group.members.values()), default=0.0)
        _cancel(group.rebalance_timer)
        group.rebalance_timer = self._timers.call_at(
            now + timeout, lambda when: self._rebalance_timed_out(group, when)
        )

    def _rebalance_timed_out(self, group: Group, now: float) -> None:
        group.rebalance_timer = None
        if group.state is not GroupState.PREPARING_REBALANCE:
            return
        for member in [m for m in group.members.values() if m.join_reply is None]:
            self._remove(group, member)
        self._maybe_complete_join(group, now, forced=True)

    def _maybe_complete_join(self, group: Group, now: float, forced: bool = False) -> None:
        members = group.members
        if not forced and any(m.join_reply is None for m in members.values()):
            return
        _cancel(group.rebalance_timer)
        group.rebalance_timer = None
        group.generation += 1
        if not members:
            self._emptied(group)
            return
        group.protocol = _choose_protocol(list(members.values()))
        if group.leader not in members:
            group.leader = next(iter(members))
        group.state = GroupState.COMPLETING_REBALANCE
        everyone = tuple(
            (m.member_id, m.instance_id, m.protocols[group.protocol]) for m in members.values()
        )
        for member in list(members.values()):
            reply, member.join_reply = member.join_reply, None
            self._named(member)
            self._touch(group, member, now)
            if reply is not None:
                reply(
                    JoinResult(
                        NONE,
                        group.generation,
                        group.protocol,
                        group.leader,
                        member.member_id,
                        everyone if member.member_id == group.leader else (),
                    )
                )

    # ------------------------------------------------------------- sync

    def sync(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        assignments: Sequence[tuple[str, bytes]],
        reply: SyncReply,
        now: float,
        instance_id: str | None = None,
    ) -> None:
        """A member asks for its assignment; the leader brings everyone's."""
        group, member, error = self._find(group_id, member_id, generation, instance_id)
        if group is None or member is None:
            reply(error, b"")
            return
        if group.state is GroupState.PREPARING_REBALANCE:
            reply(REBALANCE_IN_PROGRESS, b"")
            return
        self._touch(group, member, now)
        if group.state is GroupState.STABLE:
            reply(NONE, member.assignment)
            return
        member.sync_reply = reply
        if member_id != group.leader:
            return
        given = dict(assignments)
        group.state = GroupState.STABLE
        for each in group.members.values():
            each.assignment = given.get(each.member_id, b"")
            if each.sync_reply is not None:
                waiting, each.sync_reply = each.sync_reply, None
                waiting(NONE, each.assignment)

    # -------------------------------------------------- heartbeat, leave

    def heartbeat(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        now: float,
        instance_id: str | None = None,
    ) -> int:
        group, member, error = self._find(group_id, member_id, generation, instance_id)
        if group is None or member is None:
            return error
        self._touch(group, member, now)
        if group.state is GroupState.PREPARING_REBALANCE:
            return REBALANCE_IN_PROGRESS
        return NONE

    def leave(self, group_id: str, member_id: str, now: float) -> int:
        """LeaveGroup v0-2: one member leaves, by its member id."""
        [(_, _, error)] = self.leave_members(group_id, [(member_id, None)], now)
        return error

    def leave_members(
        self, group_id: str, leaving: Sequence[tuple[str, str | None]], now: float
    ) -> list[tuple[str, str | None, int]]:
        """LeaveGroup v3 (KIP-345): a batch of (member id, ``group.instance.id``)
        leaves; the error of each, as Kafka's ``handleLeaveGroup`` decides it.

        An empty member id with an instance id removes whoever holds that
        instance now: how an operator (kafka-python's
        ``KafkaAdminClient.remove_group_members``) removes a static member that
        will not come back, instead of the group waiting out its session. A
        member id is checked as every request's (``_check_member``): a
        replaced incarnation naming its instance is FENCED_INSTANCE_ID, an
        unknown member UNKNOWN_MEMBER_ID. One round follows for the whole batch.
        """
        group = self.groups.get(group_id)
        if group is None:
            return [(member_id, instance, UNKNOWN_MEMBER_ID) for member_id, instance in leaving]
        answers = []
        removed = False
        for member_id, instance in leaving:
            if not member_id:
                holder = None if instance is None else group.instances.get(instance)
                error = NONE if holder is not None else UNKNOWN_MEMBER_ID
                member_id_to_remove = holder
            else:
                error = _check_member(group, member_id, instance)
                member_id_to_remove = member_id if error == NONE else None
            if member_id_to_remove is not None:
                self._remove(group, group.members[member_id_to_remove])
                removed = True
            answers.append((member_id, instance, error))
        if removed:
            self._membership_changed(group, now)
        return answers

    def check_commit(
        self, group_id: str, generation: int, member_id: str, instance_id: str | None = None
    ) -> int:
        """May this OffsetCommit go ahead? Kafka's ``validateOffsetCommit``.

        A commit with generation -1 (``assign()`` users, admin clients) may
        while the group has no members; once it has some, only they may
        commit: a commit without a member id is then UNKNOWN_MEMBER_ID, so a
        stray simple consumer cannot overwrite the offsets of partitions a
        live member owns. A member commits in its current generation only
        (ILLEGAL_GENERATION otherwise); an unknown member id is
        UNKNOWN_MEMBER_ID (a group without members is one Kafka keeps as
        Empty: its members are all gone).

        As in Kafka, a member may commit while a rebalance is being prepared
        (that is how an eager consumer commits what it consumed before giving
        its partitions up); only between a join answer and the assignment
        (CompletingRebalance) is it told REBALANCE_IN_PROGRESS.
        """
        group = self.groups.get(group_id)
        if generation < 0 and (group is None or not group.members):
            return NONE
        if generation < 0 and not member_id and instance_id is None:
            return UNKNOWN_MEMBER_ID
        group, member, error = self._find(group_id, member_id, generation, instance_id)
        if group is None or member is None:
            return error
        if group.state is GroupState.COMPLETING_REBALANCE:
            return REBALANCE_IN_PROGRESS
        return NONE

    # ---------------------------------------------------------- helpers

    def _find(
        self, group_id: str, member_id: str, generation: int, instance_id: str | None
    ) -> tuple[Group | None, Member | None, int]:
        """The group and member a request names, or the error to answer it with."""
        group = self.groups.get(group_id)
        if group is None:
            return None, None, UNKNOWN_MEMBER_ID
        error = _check_member(group, member_id, instance_id)
        if error != NONE:
            return None, None, error
        member = group.members[member_id]
        if generation != group.generation:
            return None, None, ILLEGAL_GENERATION
        return group, member, NONE

    def _touch(self, group: Group, member: Member, now: float) -> None:
        """Restart the member's session timer."""
        _cancel(member.session_timer)
        member.session_timer = self._timers.call_at(
            now + member.session_timeout, lambda when: self._expired(group, member, when)
        )

    def _expired(self, group: Group, member: Member, now: float) -> None:
        if group.members.get(member.member_id) is not member:
            return
        member.session_timer = None
        self._remove(group, member)
        self._membership_changed(group, now)

    def connection_lost(self, connection: object, now: float) -> None:
        """Remove the members ``connection`` joined whose join was not answered.

        Kafka answers a new member's first JoinGroup with MEMBER_ID_REQUIRED
        and its id (KIP-394), so a consumer that closes while the round is
        open still knows whom to name in its LeaveGroup. Here the id comes
        with the round's answer (a join takes one round trip, not two), so a
        consumer closed before that sends no LeaveGroup, and the group waited
        for the member's rebalance and then session timeout.
        """
        for group, member in list(self._unnamed.pop(connection, {}).values()):
            if group.members.get(member.member_id) is member:
                self._remove(group, member)
                self._membership_changed(group, now)

    def _named(self, member: Member) -> None:
        """The member's id is on its way to its client: forget its connection."""
        connection, member.unnamed_on = member.unnamed_on, None
        if connection is not None:
            unnamed = self._unnamed.get(connection)
            if unnamed is not None:
                unnamed.pop(member.member_id, None)
                if not unnamed:
                    del self._unnamed[connection]

    def _remove(self, group: Group, member: Member) -> None:
        self._named(member)
        del group.members[member.member_id]
        instance = member.instance_id
        if instance is not None and group.instances.get(instance) == member.member_id:
            del group.instances[instance]
        _cancel(member.session_timer)
        if member.sync_reply is not None:
            member.sync_reply(UNKNOWN_MEMBER_ID, b"")
        if member.join_reply is not None:
            member.join_reply(JoinResult(UNKNOWN_MEMBER_ID, member_id=member.member_id))

    def _membership_changed(self, group: Group, now: float) -> None:
        if not group.members:
            _cancel(group.rebalance_timer)
            group.rebalance_timer = None
            self._emptied(group)
            return
        if group.state is GroupState.PREPARING_REBALANCE:
            self._maybe_complete_join(group, now)
        else:
            self._prepare_rebalance(group, now)

    def _emptied(self, group: Group) -> None:
        """The last member is gone: forget the group. Its committed offsets live
        in the logs, so nothing is lost, and a broker serving many short-lived
        groups (a test suite) does not accumulate them."""
        group.state = GroupState.EMPTY
        group.protocol = group.leader = None
        if self.groups.get(group.group_id) is group:
            del self.groups[group.group_id]
            if group.protocol_type:
                self._emptied_types[group.group_id] = group.protocol_type
                if len(self._emptied_types) > self.max_groups:
                    del self._emptied_types[next(iter(self._emptied_types))]

    def describe(self, group_id: str) -> Group | None:
        return self.groups.get(group_id)

    def protocol_type(self, group_id: str) -> str:
        """The group's protocol type: its members', else the one it had when
        its last member left, else "" (a group known only by offsets that
        an ``assign()`` consumer committed, as in Kafka)."""
        group = self.groups.get(group_id)
        if group is not None:
            return group.protocol_type or ""
        return self._emptied_types.get(group_id, "")

    def deleted(self, group_id: str) -> None:
        """The group's offsets were deleted (DeleteGroups): Kafka removes the
        group, protocol type and all."""
        self._emptied_types.pop(group_id, None)


def _check_member(group: Group, member_id: str, instance_id: str | None) -> int:
    """Kafka's check of the member a request names (``validateCurrentMember``).

    A request that carries a ``group.instance.id`` (JoinGroup v5, Heartbeat
    and SyncGroup v3, OffsetCommit v7 on) must name the member id holding
    that instance now: another id is an incarnation that was replaced
    (FENCED_INSTANCE_ID: the client stops, a duplicate instance must not go
    on consuming), an instance the group does not know is UNKNOWN_MEMBER_ID.
    Older versions carry no instance id and only the member id is checked.
    """
    if instance_id is not None:
        holder = group.instances.get(instance_id)
        if holder is None:
            return UNKNOWN_MEMBER_ID
        if holder != member_id:
            return FENCED_INSTANCE_ID
    return NONE if member_id in group.members else UNKNOWN_MEMBER_ID


def _same_subscription(protocol_type: str | None, old: bytes | None, new: bytes | None) -> bool:
    """Does a returning static member subscribe to what its old incarnation did?

    For consumers (protocol type ``consumer``) that is the topic list at the
    head of the ConsumerProtocol subscription (version, then the topics);
    the rest (user data, owned partitions, generation) changes with every
    restart and does not matter. Other protocol types are compared whole.
    Kafka checks only that the chosen strategy stays the same and leaves a
    changed subscription to the client to notice; here it runs a round.
    """
    if old is None or new is None:
        return False
    if protocol_type != "consumer":
        return old == new
    topics = _subscribed_topics(old)
    return topics is not None and topics == _subscribed_topics(new)


def _subscribed_topics(metadata: bytes) -> frozenset[str] | None:
    """The topics of a ConsumerProtocol subscription; None if it cannot be read."""
    view = memoryview(metadata)
    if len(view) < 6:
        return None
    count = int.from_bytes(view[2:6], "big", signed=True)
    if count < 0:
        return None
    topics: set[str] = set()
    at = 6
    for _ in range(count):
        if at + 2 > len(view):
            return None
        size = int.from_bytes(view[at : at + 2], "big", signed=True)
        at += 2
        if size < 0 or at + size > len(view):
            return None
        try:
            topics.add(bytes(view[at : at + size]).decode())
        except UnicodeDecodeError:
            return None
        at += size
    return frozenset(topics)


def _common(members: Sequence[Member]) -> set[str]:
    common = set(members[0].protocols)
    for member in members[1:]:
        common &= set(member.protocols)
    return common


def _choose_protocol(members: list[Member]) -> str:
    """The strategy every member supports that most members prefer (Kafka's vote)."""
    candidates = _common(members)
    votes: dict[str, int] = {}
    for member in members:
        choice = next((name for name in member.preference if name in candidates), None)
        if choice is not None:
            votes[choice] = votes.get(choice, 0) + 1
    if not votes:
        return members[0].preference[0]
    return max(votes, key=lambda name: votes[name])


def _cancel(timer: Timer | None) -> None:
    if timer is not None:
        timer.cancel()
