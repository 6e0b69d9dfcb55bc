"""The group coordinator under random joins, syncs, heartbeats, leaves and time.

Invariants, whatever the order: generations only grow (within one life
of the group: an emptied group is forgotten); every answered join
of a round carries that round's generation and leader, and only the leader's
answer lists the members; a stable group's members got exactly what the
leader assigned them; a member that left or timed out is gone; every waiting
JoinGroup and SyncGroup is eventually answered (the rebalance and session
timeouts see to it), so a client never hangs.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from minibroker.core.timers import Timers
from minibroker.kafka.groups import NONE, GroupCoordinator, GroupState, JoinResult

SESSION = 10.0
REBALANCE = 20.0


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
        self.pending_join: set[str] = set()
        self.pending_sync: set[str] = set()
        self.assigned: dict[str, bytes] = {}
        self.last_generation = 0
        self.incarnation: object = None

    def _join_reply(self, client: str):  # type: ignore[no-untyped-def]
        def reply(result: JoinResult) -> None:
            self.pending_join.discard(client)
            if result.error == NONE:
                group = self.coordinator.groups["g"]
                if group is not self.incarnation:  # an emptied group is forgotten, then new
                    self.incarnation, self.last_generation = group, 0
                assert result.generation >= self.last_generation
                self.last_generation = result.generation
                self.member[client] = result.member_id
                self.generation[client] = result.generation
                assert result.leader == group.leader
                assert bool(result.members) == (result.member_id == result.leader)
            else:
                self.member[client] = None

        return reply

    def _sync_reply(self, client: str):  # type: ignore[no-untyped-def]
        def reply(error: int, assignment: bytes) -> None:
            self.pending_sync.discard(client)
            if error == NONE:
                self.assigned[client] = assignment

        return reply

    @rule(client=st.sampled_from(["a", "b", "c"]))
    def join(self, client: str) -> None:
        self.pending_join.add(client)
        self.coordinator.join(
            "g",
            self.member[client] or "",
            client,
            SESSION,
            REBALANCE,
            "consumer",
            [("range", client.encode())],
            self._join_reply(client),
            self.now,
        )

    @rule(client=st.sampled_from(["a", "b", "c"]))
    def sync(self, client: str) -> None:
        member = self.member[client]
        if member is None:
            return
        group = self.coordinator.groups.get("g")
        if group is None:
            return
        assignments = [(m, m.encode()) for m in group.members] if member == group.leader else []
        self.pending_sync.add(client)
        self.coordinator.sync(
            "g", self.generation[client], member, assignments, self._sync_reply(client), self.now
        )

    @rule(client=st.sampled_from(["a", "b", "c"]))
    def heartbeat(self, client: str) -> None:
        member = self.member[client]
        if member is not None:
            self.coordinator.heartbeat("g", self.generation[client], member, self.now)

    @rule(client=st.sampled_from(["a", "b", "c"]))
    def leave(self, client: str) -> None:
        member = self.member[client]
        if member is not None:
            self.coordinator.leave("g", member, self.now)
            self.member[client] = None
            group = self.coordinator.groups.get("g")
            assert group is None or member not in group.members

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
            assert member.assignment == member.member_id.encode()

    @rule()
    def nobody_waits_forever(self) -> None:
        """Past every timeout, every waiting request has been answered."""
        for _ in range(3):
            self.now += SESSION + REBALANCE + 1
            self.timers.fire_due(self.now)
        assert not self.pending_join and not self.pending_sync


TestGroups = GroupMachine.TestCase
