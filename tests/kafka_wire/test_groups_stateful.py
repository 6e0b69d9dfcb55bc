"""The group coordinator under random joins, syncs, heartbeats, leaves and time.

Invariants, whatever the order: generations only grow (within one life
of the group: an emptied group is forgotten); every answered join
of a round carries that round's generation and leader, and only the leader's
answer lists the members; a stable group's members got exactly what the
leader assigned them; a member that left or timed out is gone; every waiting
JoinGroup and SyncGroup is eventually answered (the rebalance and session
timeouts see to it), so a client never hangs.

Client ``c`` is a static member (``group.instance.id``) that may restart at
any moment: its new incarnation takes the old one's place (and, in a stable
group, its assignment, without a round), the old one is fenced; an operator
may remove it by its instance id (LeaveGroup v3) at any moment too.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from minibroker.core.timers import Timers
from minibroker.kafka.groups import (
    FENCED_INSTANCE_ID,
    NONE,
    UNKNOWN_MEMBER_ID,
    GroupCoordinator,
    GroupState,
    JoinResult,
)

SESSION = 10.0
REBALANCE = 20.0
#: The static client and its ``group.instance.id``.
STATIC, INSTANCE = "c", "c-instance"
#: A consumer-protocol subscription to topic ``t`` (the static member's metadata).
SUBSCRIPTION = b"\x00\x00\x00\x00\x00\x01\x00\x01t\x00\x00\x00\x00"


class GroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.timers = Timers()
        self.coordinator = GroupCoordinator(self.timers)
        self.now = 0.0
        self.clients = ["a", "b", "c"]
        #: client -> member id it was given (None before its first join)
        self.member: dict[str, str | None] = dict.fromkeys(self.clients)
        self.generation: dict[str, int] = dict.fromkeys(self.clients, -1)
        #: Waiting requests, as (client, incarnation): a restart fences the old ones.
        self.pending_join: set[tuple[str, int]] = set()
        self.pending_sync: set[tuple[str, int]] = set()
        self.incarnations: dict[str, int] = dict.fromkeys(self.clients, 0)
        self.assigned: dict[str, bytes] = {}
        #: A static incarnation's member id -> the one it replaced.
        self.predecessor: dict[str, str] = {}
        self.last_generation = 0
        self.incarnation: object = None

    def _join_reply(self, client: str):  # type: ignore[no-untyped-def]
        incarnation = self.incarnations[client]
        self.pending_join.add((client, incarnation))

        def reply(result: JoinResult) -> None:
            self.pending_join.discard((client, incarnation))
            if incarnation != self.incarnations[client]:
                assert result.error == FENCED_INSTANCE_ID  # a replaced incarnation's
                return
            if result.error == NONE:
                group = self.coordinator.groups["g"]
                if group is not self.incarnation:  # an emptied group is forgotten, then new
                    self.incarnation, self.last_generation = group, 0
                assert result.generation >= self.last_generation
                self.last_generation = result.generation
                self.member[client] = result.member_id
                self.generation[client] = result.generation
                if result.leader != group.leader:  # a static member back without a round
                    assert client == STATIC and group.state is GroupState.STABLE
                assert bool(result.members) == (result.member_id == result.leader)
            else:
                self.member[client] = None

        return reply

    def _sync_reply(self, client: str):  # type: ignore[no-untyped-def]
        incarnation = self.incarnations[client]
        self.pending_sync.add((client, incarnation))

        def reply(error: int, assignment: bytes) -> None:
            self.pending_sync.discard((client, incarnation))
            if incarnation != self.incarnations[client]:
                assert error == FENCED_INSTANCE_ID
                return
            if error == NONE:
                self.assigned[client] = assignment

        return reply

    def _instance(self, client: str) -> str | None:
        return INSTANCE if client == STATIC else None

    @rule(client=st.sampled_from(["a", "b", "c"]))
    def join(self, client: str) -> None:
        self.coordinator.join(
            "g",
            self.member[client] or "",
            client,
            SESSION,
            REBALANCE,
            "consumer",
            [("range", SUBSCRIPTION if client == STATIC else client.encode())],
            self._join_reply(client),
            self.now,
            instance_id=self._instance(client),
        )

    @rule()
    def restart_the_static_member(self) -> None:
        """``c`` restarts: a new member id, the same instance id, no LeaveGroup."""
        group = self.coordinator.groups.get("g")
        old = None if group is None else group.instances.get(INSTANCE)
        self.incarnations[STATIC] += 1
        self.member[STATIC] = None
        self.join(STATIC)
        if old is not None:
            holder = self.coordinator.groups["g"].instances[INSTANCE]
            self.predecessor[holder] = old
            assert self.coordinator.heartbeat("g", 0, old, self.now, INSTANCE) == FENCED_INSTANCE_ID

    @rule(client=st.sampled_from(["a", "b", "c"]))
    def sync(self, client: str) -> None:
        member = self.member[client]
        if member is None:
            return
        group = self.coordinator.groups.get("g")
        if group is None:
            return
        assignments = [(m, m.encode()) for m in group.members] if member == group.leader else []
        self.coordinator.sync(
            "g",
            self.generation[client],
            member,
            assignments,
            self._sync_reply(client),
            self.now,
            self._instance(client),
        )

    @rule(client=st.sampled_from(["a", "b", "c"]))
    def heartbeat(self, client: str) -> None:
        member = self.member[client]
        if member is not None:
            self.coordinator.heartbeat(
                "g", self.generation[client], member, self.now, self._instance(client)
            )

    @rule(client=st.sampled_from(["a", "b", "c"]))
    def leave(self, client: str) -> None:
        member = self.member[client]
        if member is not None:
            self.coordinator.leave("g", member, self.now)
            self.member[client] = None
            group = self.coordinator.groups.get("g")
            assert group is None or member not in group.members

    @rule(with_others=st.booleans())
    def remove_the_static_instance(self, with_others: bool) -> None:
        """An operator removes ``c`` by its instance id (LeaveGroup v3), maybe
        with ``a`` by member id in the same batch: whoever holds the instance
        is gone, and ``c``'s own member id no longer works."""
        group = self.coordinator.groups.get("g")
        holder = None if group is None else group.instances.get(INSTANCE)
        leaving: list[tuple[str, str | None]] = [("", INSTANCE)]
        other = self.member["a"] if with_others else None
        if other is not None:
            leaving.append((other, None))
        answers = self.coordinator.leave_members("g", leaving, self.now)
        assert answers[0][2] == (NONE if holder is not None else UNKNOWN_MEMBER_ID)
        group = self.coordinator.groups.get("g")
        assert group is None or (INSTANCE not in group.instances and holder not in group.members)
        if holder is not None:
            self.member[STATIC] = None
        if other is not None:
            assert group is None or other not in group.members
            self.member["a"] = None

    @rule(seconds=st.sampled_from([0.5, 5.0, 11.0, 25.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.timers.fire_due(self.now)

    @invariant()
    def stable_members_hold_the_leaders_assignment(self) -> None:
        group = self.coordinator.groups.get("g")
        if group is None or group.state is not GroupState.STABLE:
            return
        for member in group.members.values():
            # The leader assigns each member its id; a static member back
            # without a round holds what its predecessor was assigned.
            ids, each = {member.member_id}, member.member_id
            while each in self.predecessor:
                each = self.predecessor[each]
                ids.add(each)
            assert member.assignment in {i.encode() for i in ids}

    @rule()
    def nobody_waits_forever(self) -> None:
        """Past every timeout, every waiting request has been answered."""
        for _ in range(3):
            self.now += SESSION + REBALANCE + 1
            self.timers.fire_due(self.now)
        assert not self.pending_join and not self.pending_sync


TestGroups = GroupMachine.TestCase
