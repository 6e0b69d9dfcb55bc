"""The classic group protocol, driven directly: no sockets, time passed in."""

from __future__ import annotations

from minibroker.core.timers import Timers
from minibroker.kafka.groups import (
    FENCED_INSTANCE_ID,
    ILLEGAL_GENERATION,
    INCONSISTENT_GROUP_PROTOCOL,
    NONE,
    REBALANCE_IN_PROGRESS,
    UNKNOWN_MEMBER_ID,
    GroupCoordinator,
    GroupState,
    JoinResult,
)


class Answers:
    def __init__(self) -> None:
        self.joins: list[JoinResult] = []
        self.syncs: list[tuple[int, bytes]] = []

    def join(self, result: JoinResult) -> None:
        self.joins.append(result)

    def sync(self, error: int, assignment: bytes) -> None:
        self.syncs.append((error, assignment))


def join(
    coordinator: GroupCoordinator,
    answers: Answers,
    member_id: str = "",
    now: float = 0.0,
    protocols: tuple[tuple[str, bytes], ...] = (("range", b"meta"),),
    connection: object | None = None,
) -> None:
    coordinator.join(
        "g",
        member_id,
        "client",
        10.0,
        30.0,
        "consumer",
        protocols,
        answers.join,
        now,
        connection=connection,
    )


def test_a_lone_member_joins_at_once_as_leader_of_generation_1() -> None:
    coordinator = GroupCoordinator(Timers())
    a = Answers()
    join(coordinator, a)
    [result] = a.joins
    assert result.error == NONE
    assert result.generation == 1
    assert result.leader == result.member_id
    assert result.members == ((result.member_id, None, b"meta"),)
    coordinator.sync("g", 1, result.member_id, [(result.member_id, b"all")], a.sync, 0.0)
    assert a.syncs == [(NONE, b"all")]
    assert coordinator.groups["g"].state is GroupState.STABLE


def test_a_second_member_makes_the_first_rejoin_and_gets_the_leaders_assignment() -> None:
    coordinator = GroupCoordinator(Timers())
    a, b = Answers(), Answers()
    join(coordinator, a)
    leader = a.joins[0].member_id
    coordinator.sync("g", 1, leader, [(leader, b"p0,p1")], a.sync, 0.0)
    join(coordinator, b, now=1.0)
    assert b.joins == []  # waits for the leader to rejoin
    assert coordinator.heartbeat("g", 1, leader, 1.5) == REBALANCE_IN_PROGRESS
    join(coordinator, a, member_id=leader, now=2.0)
    follower = b.joins[0].member_id
    assert [r.generation for r in (a.joins[1], b.joins[0])] == [2, 2]
    assert a.joins[1].leader == leader and len(a.joins[1].members) == 2
    assert b.joins[0].members == ()  # only the leader sees the members
    coordinator.sync("g", 2, follower, [], b.sync, 2.0)
    assert b.syncs == []  # waits for the leader's assignment
    coordinator.sync("g", 2, leader, [(leader, b"p0"), (follower, b"p1")], a.sync, 2.0)
    assert b.syncs == [(NONE, b"p1")]
    assert a.syncs[-1] == (NONE, b"p0")
    assert coordinator.heartbeat("g", 1, leader, 2.5) == ILLEGAL_GENERATION


def test_a_silent_member_is_dropped_at_its_session_timeout() -> None:
    timers = Timers()
    coordinator = GroupCoordinator(timers)
    a, b = Answers(), Answers()
    join(coordinator, a)
    first = a.joins[0].member_id
    join(coordinator, b)
    join(coordinator, a, member_id=first)
    second = b.joins[0].member_id
    for answers, member in ((a, first), (b, second)):
        coordinator.sync("g", 2, member, [(first, b"x"), (second, b"y")], answers.sync, 0.0)
    timers.fire_due(9.0)
    assert coordinator.heartbeat("g", 2, first, 9.0) == NONE
    timers.fire_due(10.0)  # the second member never heartbeated
    assert second not in coordinator.groups["g"].members
    assert coordinator.heartbeat("g", 2, first, 10.0) == REBALANCE_IN_PROGRESS
    join(coordinator, a, member_id=first, now=10.0)
    assert a.joins[-1].generation == 3 and len(a.joins[-1].members) == 1


def test_the_rebalance_timeout_drops_members_that_do_not_rejoin() -> None:
    timers = Timers()
    coordinator = GroupCoordinator(timers)
    a, b = Answers(), Answers()
    join(coordinator, a)
    join(coordinator, b, now=1.0)  # a never rejoins
    timers.fire_due(1.0 + 30.0)
    assert b.joins[0].error == NONE
    assert b.joins[0].members == ((b.joins[0].member_id, None, b"meta"),)


def test_leaving_ends_the_membership_and_unknown_members_are_refused() -> None:
    coordinator = GroupCoordinator(Timers())
    a = Answers()
    join(coordinator, a)
    member = a.joins[0].member_id
    assert coordinator.leave("g", member, 0.0) == NONE
    assert "g" not in coordinator.groups  # an empty group is forgotten
    assert coordinator.leave("g", member, 0.0) == UNKNOWN_MEMBER_ID
    join(coordinator, a, member_id="who")
    assert a.joins[-1].error == UNKNOWN_MEMBER_ID


def test_the_strategy_is_one_every_member_supports() -> None:
    coordinator = GroupCoordinator(Timers())
    a, b, c = Answers(), Answers(), Answers()
    join(coordinator, a, protocols=(("range", b"r"), ("roundrobin", b"rr")))
    join(coordinator, b, protocols=(("roundrobin", b"rr2"),))
    join(
        coordinator,
        a,
        member_id=a.joins[0].member_id,
        protocols=(("range", b"r"), ("roundrobin", b"rr")),
    )
    assert b.joins[0].protocol == "roundrobin"
    join(coordinator, c, protocols=(("sticky", b"s"),))
    assert c.joins == [JoinResult(INCONSISTENT_GROUP_PROTOCOL)]


def test_commits_outside_a_group_are_allowed_and_stale_generations_are_not() -> None:
    coordinator = GroupCoordinator(Timers())
    a, b = Answers(), Answers()
    assert coordinator.check_commit("g", -1, "") == NONE
    join(coordinator, a)
    member = a.joins[0].member_id
    # Joined, not yet assigned: Kafka says "rebalance in progress" then.
    assert coordinator.check_commit("g", 1, member) == REBALANCE_IN_PROGRESS
    coordinator.sync("g", 1, member, [(member, b"p0")], a.sync, 0.0)
    assert coordinator.check_commit("g", 1, member) == NONE
    join(coordinator, b)
    # A rebalance is being prepared: the member may still commit what it
    # consumed in its generation before it gives its partitions up.
    assert coordinator.check_commit("g", 1, member) == NONE
    assert coordinator.check_commit("g", 0, member) == ILLEGAL_GENERATION
    assert coordinator.check_commit("g", 1, "stranger") == UNKNOWN_MEMBER_ID


def test_commits_without_a_generation_only_while_the_group_has_no_members() -> None:
    """Kafka's rule: an ``assign()`` consumer (generation -1, no member id) may
    commit for an empty group only; with live members it is UNKNOWN_MEMBER_ID."""
    coordinator = GroupCoordinator(Timers())
    a = Answers()
    assert coordinator.check_commit("g", -1, "") == NONE
    join(coordinator, a)
    member = a.joins[0].member_id
    coordinator.sync("g", 1, member, [(member, b"p0")], a.sync, 0.0)
    assert coordinator.check_commit("g", -1, "") == UNKNOWN_MEMBER_ID
    assert coordinator.check_commit("g", -1, "", instance_id="app-1") == UNKNOWN_MEMBER_ID
    assert coordinator.check_commit("g", -1, member) == ILLEGAL_GENERATION
    assert coordinator.leave("g", member, 0.0) == NONE
    assert coordinator.check_commit("g", -1, "") == NONE
    assert coordinator.check_commit("g", 1, member) == UNKNOWN_MEMBER_ID


def test_a_batch_leave_removes_static_members_by_instance_and_checks_each() -> None:
    """LeaveGroup v3: each (member id, instance id) answered as Kafka does; one
    round for the members left, which they join at once."""
    coordinator = GroupCoordinator(Timers())
    a, b, c = Answers(), Answers(), Answers()
    static_join(coordinator, a, 0.0, instance="app-1")
    static_join(coordinator, b, 0.0, instance="app-2")
    one = a.joins[0].member_id
    static_join(coordinator, a, 0.0, instance="app-1", member_id=one)
    two = b.joins[0].member_id
    join(coordinator, c, now=0.0, protocols=(("range", subscription("jobs")),))
    static_join(coordinator, a, 0.0, instance="app-1", member_id=one)
    static_join(coordinator, b, 0.0, instance="app-2", member_id=two)
    dynamic = c.joins[0].member_id
    answers = coordinator.leave_members(
        "g",
        [
            ("", "app-2"),  # an operator removing the instance, whoever holds it
            (two, "app-2"),  # gone by now
            ("stale-id", "app-1"),  # not the member holding app-1: fenced
            (dynamic, None),
            ("", "nobody"),
        ],
        1.0,
    )
    assert answers == [
        ("", "app-2", NONE),
        (two, "app-2", UNKNOWN_MEMBER_ID),
        ("stale-id", "app-1", FENCED_INSTANCE_ID),
        (dynamic, None, NONE),
        ("", "nobody", UNKNOWN_MEMBER_ID),
    ]
    group = coordinator.groups["g"]
    assert list(group.members) == [one] and group.instances == {"app-1": one}
    assert coordinator.heartbeat("g", group.generation, one, 1.0) == REBALANCE_IN_PROGRESS
    static_join(coordinator, a, 1.0, instance="app-1", member_id=one)
    assert a.joins[-1].error == NONE and len(a.joins[-1].members) == 1
    assert coordinator.leave_members("g", [("", "app-1")], 2.0) == [("", "app-1", NONE)]
    assert "g" not in coordinator.groups
    assert coordinator.leave_members("g", [(one, "app-1")], 2.0) == [
        (one, "app-1", UNKNOWN_MEMBER_ID)
    ]


def subscription(*topics: str, user_data: bytes = b"") -> bytes:
    """A ConsumerProtocol subscription (v0): version, topics, user data."""
    out = (0).to_bytes(2, "big") + len(topics).to_bytes(4, "big")
    for topic in topics:
        out += len(topic).to_bytes(2, "big") + topic.encode()
    return out + len(user_data).to_bytes(4, "big") + user_data


def static_join(
    coordinator: GroupCoordinator,
    answers: Answers,
    now: float,
    instance: str = "app-1",
    member_id: str = "",
    metadata: bytes = subscription("jobs"),
) -> None:
    protocols = (("range", metadata),)
    args = ("g", member_id, "client", 10.0, 30.0, "consumer", protocols, answers.join, now)
    coordinator.join(*args, instance_id=instance)


def test_a_static_members_new_incarnation_takes_its_place_at_once() -> None:
    """A consumer with ``group.instance.id`` sends no LeaveGroup when it closes;
    restarted, it joins with the same instance id and takes the old member's
    place at once instead of waiting for that member's session to time out."""
    coordinator = GroupCoordinator(Timers())
    old, new, other = Answers(), Answers(), Answers()
    static_join(coordinator, old, 0.0)
    gone = old.joins[0].member_id
    coordinator.sync("g", 1, gone, [(gone, b"all")], old.sync, 0.0)
    static_join(coordinator, new, 1.0)  # the restart: the old incarnation never left
    [result] = new.joins
    assert (result.error, result.generation) == (NONE, 1)  # no round: nothing changed
    assert coordinator.heartbeat("g", 1, gone, 1.5) == UNKNOWN_MEMBER_ID  # Heartbeat v0-2
    # Another instance id is another member: it waits for the first to rejoin.
    static_join(coordinator, other, 2.0, instance="app-2")
    assert other.joins == []
    members = coordinator.groups["g"].members.values()
    assert sorted(str(m.instance_id) for m in members) == ["app-1", "app-2"]


def test_a_replaced_incarnation_is_fenced_where_its_request_names_the_instance() -> None:
    """Kafka answers FENCED_INSTANCE_ID to the old member id of a replaced static
    member on every request that carries its group.instance.id; requests of
    versions without the field only know the member id is gone."""
    coordinator = GroupCoordinator(Timers())
    old, new = Answers(), Answers()
    static_join(coordinator, old, 0.0)
    gone = old.joins[0].member_id
    coordinator.sync("g", 1, gone, [(gone, b"p0")], old.sync, 0.0)
    static_join(coordinator, new, 1.0)
    current = new.joins[0].member_id
    assert coordinator.heartbeat("g", 1, gone, 1.0, instance_id="app-1") == FENCED_INSTANCE_ID
    assert coordinator.check_commit("g", 1, gone, instance_id="app-1") == FENCED_INSTANCE_ID
    assert coordinator.check_commit("g", 1, gone) == UNKNOWN_MEMBER_ID  # OffsetCommit v2-6
    coordinator.sync("g", 1, gone, [], old.sync, 1.0, instance_id="app-1")
    assert old.syncs[-1] == (FENCED_INSTANCE_ID, b"")
    static_join(coordinator, old, 1.0, member_id=gone)
    assert old.joins[-1].error == FENCED_INSTANCE_ID
    # The current holder is fine; an instance the group does not know is unknown.
    assert coordinator.heartbeat("g", 1, current, 1.0, instance_id="app-1") == NONE
    assert coordinator.heartbeat("g", 1, current, 1.0, instance_id="app-9") == UNKNOWN_MEMBER_ID
    # Once the instance has left (its session ran out), its old ids are unknown.
    assert coordinator.leave("g", current, 2.0) == NONE
    static_join(coordinator, Answers(), 2.0, instance="app-2")
    assert coordinator.heartbeat("g", 1, gone, 2.0, instance_id="app-1") == UNKNOWN_MEMBER_ID


def test_what_a_replaced_incarnation_waits_for_is_answered_fenced() -> None:
    coordinator = GroupCoordinator(Timers())
    a, b, b_again = Answers(), Answers(), Answers()
    static_join(coordinator, a, 0.0, instance="app-1")
    leader = a.joins[0].member_id
    coordinator.sync("g", 1, leader, [(leader, b"p0,p1")], a.sync, 0.0)
    static_join(coordinator, b, 1.0, instance="app-2")  # waits for the leader to rejoin
    assert b.joins == []
    static_join(coordinator, b_again, 1.5, instance="app-2")  # b restarted meanwhile
    assert [r.error for r in b.joins] == [FENCED_INSTANCE_ID]
    static_join(coordinator, a, 2.0, member_id=leader)
    assert b_again.joins[0].generation == 2
    [_, (_, instance, _)] = a.joins[-1].members
    assert instance == "app-2"
    follower = b_again.joins[0].member_id
    coordinator.sync("g", 2, follower, [], b_again.sync, 2.0, instance_id="app-2")
    static_join(coordinator, Answers(), 2.5, instance="app-2")  # restarted again, before its sync
    assert b_again.syncs == [(FENCED_INSTANCE_ID, b"")]


def test_the_leaders_member_list_carries_the_instance_ids() -> None:
    coordinator = GroupCoordinator(Timers())
    a, b = Answers(), Answers()
    static_join(coordinator, a, 0.0, instance="app-1")
    join(coordinator, b, now=0.0)  # a dynamic member
    static_join(coordinator, a, 0.0, member_id=a.joins[0].member_id)
    instances = {member_id: instance for member_id, instance, _ in a.joins[-1].members}
    assert instances == {a.joins[-1].member_id: "app-1", b.joins[0].member_id: None}


def test_a_returning_static_member_gets_its_old_assignment_without_a_round() -> None:
    """KIP-345: an unchanged static member's restart does not disturb the others.
    Its join is answered in the current generation with the leader as it was,
    and its SyncGroup gets what the leader last assigned its old incarnation."""
    timers = Timers()
    coordinator = GroupCoordinator(timers)
    a, b, b_again = Answers(), Answers(), Answers()
    static_join(coordinator, a, 0.0, instance="app-1")
    static_join(coordinator, b, 0.0, instance="app-2")
    leader = a.joins[0].member_id
    static_join(coordinator, a, 0.0, member_id=leader)
    gone = b.joins[0].member_id
    coordinator.sync("g", 2, leader, [(leader, b"p0"), (gone, b"p1")], a.sync, 0.0)
    coordinator.sync("g", 2, gone, [], b.sync, 0.0)
    # b restarts: new user data (as after any restart), the same topics.
    restarted = subscription("jobs", user_data=b"x")
    static_join(coordinator, b_again, 5.0, instance="app-2", metadata=restarted)
    [result] = b_again.joins
    assert (result.error, result.generation, result.leader) == (NONE, 2, leader)
    assert result.members == ()
    group = coordinator.groups["g"]
    assert group.state is GroupState.STABLE
    assert coordinator.heartbeat("g", 2, leader, 5.0) == NONE  # the leader is not disturbed
    coordinator.sync("g", 2, result.member_id, [], b_again.sync, 5.0, instance_id="app-2")
    assert b_again.syncs == [(NONE, b"p1")]
    # The old incarnation's session (due at 10 s) is gone with it.
    timers.fire_due(14.0)
    assert coordinator.heartbeat("g", 2, leader, 14.0) == NONE
    assert coordinator.heartbeat("g", 2, result.member_id, 14.0, instance_id="app-2") == NONE


def test_a_returning_static_leader_keeps_the_leadership_without_computing_again() -> None:
    coordinator = GroupCoordinator(Timers())
    a, b, a_again = Answers(), Answers(), Answers()
    static_join(coordinator, a, 0.0, instance="app-1")
    static_join(coordinator, b, 0.0, instance="app-2")
    leader = a.joins[0].member_id
    static_join(coordinator, a, 0.0, member_id=leader)
    follower = b.joins[0].member_id
    coordinator.sync("g", 2, leader, [(leader, b"p0"), (follower, b"p1")], a.sync, 0.0)
    static_join(coordinator, a_again, 1.0, instance="app-1")
    [result] = a_again.joins
    # Told the leader as it was (not itself): it computes no assignment nobody would get.
    assert (result.error, result.generation, result.leader) == (NONE, 2, leader)
    assert coordinator.groups["g"].leader == result.member_id  # the leadership moved with it
    coordinator.sync("g", 2, result.member_id, [], a_again.sync, 1.0)
    assert a_again.syncs == [(NONE, b"p0")]


def test_a_static_member_returning_with_another_subscription_starts_a_round() -> None:
    coordinator = GroupCoordinator(Timers())
    a, a_again = Answers(), Answers()
    static_join(coordinator, a, 0.0)
    first = a.joins[0].member_id
    coordinator.sync("g", 1, first, [(first, b"p0")], a.sync, 0.0)
    static_join(coordinator, a_again, 1.0, metadata=subscription("jobs", "audit"))
    [result] = a_again.joins
    assert (result.error, result.generation, result.leader) == (NONE, 2, result.member_id)
    assert coordinator.groups["g"].state is GroupState.COMPLETING_REBALANCE


def test_a_new_member_whose_connection_closes_before_its_join_is_answered_is_removed() -> None:
    """Its client never learnt its member id, so it could send no LeaveGroup:
    the round used to wait for it, hand it partitions, then wait out its
    session (a consumer closed right after subscribing, in a busy group)."""
    coordinator = GroupCoordinator(Timers())
    a, b = Answers(), Answers()
    join(coordinator, a)
    leader = a.joins[0].member_id
    coordinator.sync("g", 1, leader, [(leader, b"p0,p1")], a.sync, 0.0)
    connection = object()
    join(coordinator, b, now=1.0, connection=connection)
    assert b.joins == []  # parked until the leader rejoins
    coordinator.connection_lost(connection, 1.5)
    [gone] = b.joins
    assert gone.error == UNKNOWN_MEMBER_ID
    join(coordinator, a, member_id=leader, now=2.0)
    assert a.joins[-1].generation == 2
    assert [member_id for member_id, _, _ in a.joins[-1].members] == [leader]


def test_a_member_whose_join_was_answered_stays_when_its_connection_closes() -> None:
    """It knows its id: it may reconnect and go on, or leave; its session decides."""
    coordinator = GroupCoordinator(Timers())
    a = Answers()
    connection = object()
    join(coordinator, a, connection=connection)
    member = a.joins[0].member_id
    coordinator.connection_lost(connection, 1.0)
    assert list(coordinator.groups["g"].members) == [member]
    assert coordinator.heartbeat("g", 1, member, 1.0) == NONE
