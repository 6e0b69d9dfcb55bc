"""confluent-kafka, aiokafka and kafka-python run against minibroker unchanged.

Every scenario runs through each client (tests/kafka_wire/kafka_clients.py) on the
session's threaded broker, in a namespace of its own (``minibroker_kafka_bootstrap``).
What the Kafka clients wrote is also checked through minibroker's own client:
a Kafka partition is a minibroker log.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import minibroker
from kafka_wire.kafka_clients import (
    CLIENTS,
    SESSION_MS,
    STATIC_SESSION_MS,
    Confluent,
    KafkaClient,
    KafkaPython,
    Member,
    wait_for,
)
from minibroker.testing import KafkaBootstrap, ThreadedBroker, run_in_thread

# kafka-python reads its bundled schemas with a deprecated importlib call.
pytestmark = pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning")

VALUES = [b"record-%d" % i for i in range(20)]


@pytest.fixture(params=CLIENTS, ids=lambda client: client.name)
def client(request: pytest.FixtureRequest) -> KafkaClient:
    return request.param  # type: ignore[no-any-return]


def _log(
    server: ThreadedBroker, kafka: KafkaBootstrap, name: str
) -> minibroker.client.logs.LogStats:
    with minibroker.connect_sync(server.url_for(kafka.namespace)) as mb:
        return mb.log_stats(name)


@pytest.mark.parametrize("mode", ["default", "idempotent", "gzip", "snappy", "lz4", "zstd"])
def test_produce_then_read_through_both_doors(
    client: KafkaClient,
    mode: str,
    minibroker_kafka_bootstrap: KafkaBootstrap,
    minibroker_kafka_server: ThreadedBroker,
) -> None:
    kafka = minibroker_kafka_bootstrap
    options = {
        "default": {},
        "idempotent": {"idempotent": True},
    }.get(mode, {"compression": mode})
    client.produce(kafka, "events", VALUES, **options)
    with minibroker.connect_sync(minibroker_kafka_server.url_for(kafka.namespace)) as mb:
        assert [record.body for record in mb.read("events-0", start=0)] == VALUES
    assert client.consume(kafka, "events", "readers", len(VALUES), manual=True) == VALUES


@pytest.mark.parametrize("manual", [False, True], ids=["auto-commit", "manual-commit"])
def test_group_consume_commits_into_the_logs_group_offsets(
    client: KafkaClient,
    manual: bool,
    minibroker_kafka_bootstrap: KafkaBootstrap,
    minibroker_kafka_server: ThreadedBroker,
) -> None:
    kafka = minibroker_kafka_bootstrap
    client.produce(kafka, "orders", VALUES[:10])
    assert client.consume(kafka, "orders", "billing", 10, manual=manual) == VALUES[:10]
    stats = _log(minibroker_kafka_server, kafka, "orders-0")
    assert stats.groups["billing"].committed == 10
    assert stats.groups["billing"].lag == 0
    client.produce(kafka, "orders", VALUES[10:15])
    assert _log(minibroker_kafka_server, kafka, "orders-0").groups["billing"].lag == 5
    assert client.consume(kafka, "orders", "billing", 5, manual=manual) == VALUES[10:15]


def test_offsets_for_times_and_seek(
    client: KafkaClient,
    minibroker_kafka_bootstrap: KafkaBootstrap,
    minibroker_kafka_server: ThreadedBroker,
) -> None:
    kafka = minibroker_kafka_bootstrap
    # The producer's timestamps (CreateTime) are the records' times, kept as sent.
    earlier = int(time.time() * 1000) - 600_000
    later = earlier + 60_000
    client.produce(kafka, "audit", VALUES[:5], timestamps=[earlier] * 5)
    client.produce(kafka, "audit", VALUES[5:8], timestamps=[later, later + 1, later + 2])
    with minibroker.connect_sync(minibroker_kafka_server.url_for(kafka.namespace)) as mb:
        records = mb.read("audit-0")
    assert [r.timestamp_ms for r in records] == [earlier] * 5 + [later, later + 1, later + 2]
    offset, values = client.offset_for_time_then_read(kafka, "audit", later - 1000, 3)
    assert offset == 5
    assert values == VALUES[5:8]
    offset, _ = client.offset_for_time_then_read(kafka, "audit", later + 1, 1)
    assert offset == 6


def test_admin_create_topics_makes_one_log_per_partition(
    client: KafkaClient,
    minibroker_kafka_bootstrap: KafkaBootstrap,
    minibroker_kafka_server: ThreadedBroker,
) -> None:
    kafka = minibroker_kafka_bootstrap
    client.create_topic(kafka, "payments", 3)
    with minibroker.connect_sync(minibroker_kafka_server.url_for(kafka.namespace)) as mb:
        assert [name for name in mb.list_logs() if name.startswith("payments")] == [
            "payments-0",
            "payments-1",
            "payments-2",
        ]


@pytest.mark.parametrize(
    ("client_name", "assignor"),
    [
        ("confluent-kafka", None),
        ("confluent-kafka", "cooperative-sticky"),
        ("aiokafka", None),
        ("kafka-python", None),
    ],
)
def test_a_second_member_takes_over_partitions_and_nothing_is_lost(
    client_name: str, assignor: str | None, minibroker_kafka_bootstrap: KafkaBootstrap
) -> None:
    kafka = minibroker_kafka_bootstrap
    client = next(each for each in CLIENTS if each.name == client_name)
    client.create_topic(kafka, "jobs", 3)
    first = [b"a-%d" % i for i in range(30)]
    client.produce(kafka, "jobs", first, keys=[b"key-%d" % i for i in range(30)])
    one = Member(client_name, kafka, "jobs", "workers", assignor)
    wait_for(lambda: one.assignment == {0, 1, 2} and len(one.seen) == 30, "the lone member")
    two = Member(client_name, kafka, "jobs", "workers", assignor)
    wait_for(
        lambda: (
            one.assignment
            and two.assignment
            and one.assignment | two.assignment == {0, 1, 2}
            and not one.assignment & two.assignment
        ),
        "the partitions to be shared",
    )
    second = [b"b-%d" % i for i in range(30)]
    client.produce(kafka, "jobs", second, keys=[b"key-%d" % i for i in range(30)])
    wait_for(lambda: len(one.seen) + len(two.seen) >= 60, "every record")
    one.stop()
    two.stop()
    assert sorted(one.seen + two.seen) == sorted(first + second)
    assert two.seen, "the new member consumed its share"


def test_a_closing_member_leaves_and_the_other_takes_over_before_its_session_ends(
    client: KafkaClient, minibroker_kafka_bootstrap: KafkaBootstrap
) -> None:
    """A dynamic consumer's close sends LeaveGroup (librdkafka and aiokafka v1,
    kafka-python v3 since it is offered): the member left gets every
    partition at once, not after the closed one's session (6 s) ran out."""
    kafka = minibroker_kafka_bootstrap
    client.create_topic(kafka, "jobs", 2)
    one = Member(client.name, kafka, "jobs", "leavers", None)
    wait_for(lambda: one.assignment == {0, 1}, "the first member's assignment")
    two = Member(client.name, kafka, "jobs", "leavers", None)
    wait_for(lambda: len(one.assignment) == len(two.assignment) == 1, "the partitions shared")
    two.stop()
    started = time.monotonic()
    wait_for(lambda: one.assignment == {0, 1}, "the member left to take both partitions")
    took = time.monotonic() - started
    one.stop()
    assert took < SESSION_MS / 1000 / 2


def test_a_restarted_static_member_takes_its_place_without_waiting_for_its_session(
    client: KafkaClient, minibroker_kafka_bootstrap: KafkaBootstrap
) -> None:
    """A consumer with ``group.instance.id`` sends no LeaveGroup when it closes
    (confluent-kafka at least). Restarted with the same id, it must get its
    partitions back at once, not after the old incarnation's session (30 s)
    has timed out: minibroker gives the new member the old one's place."""
    kafka = minibroker_kafka_bootstrap
    client.create_topic(kafka, "jobs", 2)
    first = Member(client.name, kafka, "jobs", "static", None, instance="worker-1")
    wait_for(lambda: first.assignment == {0, 1}, "the first incarnation's assignment")
    first.stop()
    started = time.monotonic()
    again = Member(client.name, kafka, "jobs", "static", None, instance="worker-1")
    wait_for(lambda: again.assignment == {0, 1}, "the restarted instance's assignment")
    took = time.monotonic() - started
    again.stop()
    assert took < STATIC_SESSION_MS / 1000 / 3


def test_a_restarted_static_member_gets_its_partitions_back_without_a_rebalance(
    client: KafkaClient, minibroker_kafka_bootstrap: KafkaBootstrap
) -> None:
    """KIP-345: a static member restarted with the same subscription gets the
    partitions its old incarnation held, and the other members are not
    disturbed: no rebalance round, so nothing is revoked from them."""
    kafka = minibroker_kafka_bootstrap
    client.create_topic(kafka, "jobs", 2)
    one = Member(client.name, kafka, "jobs", "pair", None, instance="worker-1")
    wait_for(lambda: one.assignment == {0, 1}, "the first member's assignment")
    two = Member(client.name, kafka, "jobs", "pair", None, instance="worker-2")
    wait_for(
        lambda: (
            len(one.assignment) == len(two.assignment) == 1 and one.assignment != two.assignment
        ),
        "the partitions to be shared",
    )
    held, revoked = two.assignment, one.revocations
    two.stop()
    again = Member(client.name, kafka, "jobs", "pair", None, instance="worker-2")
    wait_for(lambda: again.assignment == held, "the restarted member's partition")
    # In a round, the other member gives its partitions up before the round
    # can end, so before the restarted one is assigned: it would show by now.
    # (Read before stop(): closing revokes a consumer's own partitions.)
    revoked_after, kept = one.revocations, one.assignment
    again.stop()
    one.stop()
    assert revoked_after == revoked, "the other member went through a rebalance"
    assert kept == {0, 1} - held


def test_an_operator_removes_a_departed_static_member_and_the_group_goes_on_at_once(
    client: KafkaClient, minibroker_kafka_bootstrap: KafkaBootstrap
) -> None:
    """KIP-345's remedy for a static member that will not come back: remove
    its instance with LeaveGroup v3 (kafka-python's ``remove_group_members``),
    and the members left take its partitions over at once instead of after
    its session (30 s). Before LeaveGroup v3 was served, kafka-python refused
    ("requires LeaveGroup v3+")."""
    from kafka.admin import KafkaAdminClient, MemberToRemove
    from kafka.errors import NoError, UnknownMemberIdError

    kafka = minibroker_kafka_bootstrap
    client.create_topic(kafka, "jobs", 2)
    one = Member(client.name, kafka, "jobs", "pair", None, instance="worker-1")
    wait_for(lambda: one.assignment == {0, 1}, "the first member's assignment")
    two = Member(client.name, kafka, "jobs", "pair", None, instance="worker-2")
    wait_for(lambda: len(one.assignment) == len(two.assignment) == 1, "the partitions shared")
    two.stop()  # a static member sends no LeaveGroup
    started = time.monotonic()
    admin = KafkaAdminClient(**kafka.kwargs())
    try:
        removed = admin.remove_group_members(
            "pair",
            [MemberToRemove(group_instance_id="worker-2"), MemberToRemove(member_id="nobody")],
        )
    finally:
        admin.close()
    assert sorted(removed.items()) == [("nobody", UnknownMemberIdError), ("worker-2", NoError)]
    wait_for(lambda: one.assignment == {0, 1}, "the member left to take both partitions")
    took = time.monotonic() - started
    one.stop()
    assert took < STATIC_SESSION_MS / 1000 / 3


@pytest.mark.parametrize("client_name", ["confluent-kafka", "kafka-python"])
def test_a_simple_consumer_may_not_commit_for_a_group_with_live_members(
    client_name: str,
    minibroker_kafka_bootstrap: KafkaBootstrap,
    minibroker_kafka_server: ThreadedBroker,
) -> None:
    """A consumer using ``assign()`` commits with generation -1 and no member
    id. Kafka accepts that only while the group has no members; with a live
    member, the commit is UNKNOWN_MEMBER_ID, so it cannot overwrite the
    offsets of partitions the member owns. Once the group is empty it may."""
    kafka = minibroker_kafka_bootstrap
    client = next(each for each in CLIENTS if each.name == client_name)
    client.create_topic(kafka, "jobs", 1)
    client.produce(kafka, "jobs", VALUES[:4])
    live = Member(client_name, kafka, "jobs", "owners", None)
    wait_for(lambda: len(live.seen) == 4, "the live member's records")
    commit = _simple_commit_confluent if client_name == "confluent-kafka" else _simple_commit_kp
    assert commit(kafka, "owners", 1) == "UNKNOWN_MEMBER_ID"
    assert _log(minibroker_kafka_server, kafka, "jobs-0").groups["owners"].committed == 4
    live.stop()
    assert commit(kafka, "owners", 1) == "NONE"
    assert _log(minibroker_kafka_server, kafka, "jobs-0").groups["owners"].committed == 1


def _simple_commit_confluent(kafka: KafkaBootstrap, group: str, offset: int) -> str:
    """Commit ``offset`` of jobs-0 for ``group`` from an ``assign()`` consumer: the error name."""
    from confluent_kafka import KafkaException, TopicPartition

    consumer = Confluent().consumer(kafka, group, **{"enable.auto.commit": False})
    consumer.assign([TopicPartition("jobs", 0, 0)])
    try:
        consumer.commit(offsets=[TopicPartition("jobs", 0, offset)], asynchronous=False)
    except KafkaException as exc:
        return str(exc.args[0].name())
    finally:
        consumer.close()
    return "NONE"


def _simple_commit_kp(kafka: KafkaBootstrap, group: str, offset: int) -> str:
    """As :func:`_simple_commit_confluent`, through kafka-python."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import CommitFailedError, UnknownMemberIdError
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(**kafka.kwargs(group_id=group, enable_auto_commit=False))
    consumer.assign([TopicPartition("jobs", 0)])
    try:
        consumer.commit({TopicPartition("jobs", 0): OffsetAndMetadata(offset, "", -1)})
    except CommitFailedError as exc:  # kafka-python wraps the broker's error
        [cause] = exc.args
        return "UNKNOWN_MEMBER_ID" if isinstance(cause, UnknownMemberIdError) else repr(cause)
    finally:
        consumer.close()
    return "NONE"


@pytest.mark.parametrize("client_name", ["confluent-kafka", "kafka-python"])
def test_static_members_are_ranked_by_instance_id_in_the_leaders_assignment(
    client_name: str, minibroker_kafka_bootstrap: KafkaBootstrap
) -> None:
    """The leader's JoinGroup answer (v5) carries each member's
    ``group.instance.id``; librdkafka's and kafka-python's range assignors
    order static members by it, so a static member's partitions do not
    depend on its member id (new at every restart). aiokafka's assignors
    order by member id only."""
    kafka = minibroker_kafka_bootstrap
    client = next(each for each in CLIENTS if each.name == client_name)
    client.create_topic(kafka, "jobs", 2)
    # worker-b joins first and gets the first member id; by instance id it comes second.
    b = Member(client_name, kafka, "jobs", "ranked", None, instance="worker-b")
    wait_for(lambda: b.assignment == {0, 1}, "the first member's assignment")
    a = Member(client_name, kafka, "jobs", "ranked", None, instance="worker-a")
    wait_for(lambda: a.assignment and b.assignment and a.assignment != b.assignment, "a share")
    a.stop()
    b.stop()
    assert (a.assignment, b.assignment) == ({0}, {1})


@pytest.mark.parametrize("client_name", ["confluent-kafka", "kafka-python"])
def test_a_replaced_static_incarnation_is_fenced(
    client_name: str, minibroker_kafka_bootstrap: KafkaBootstrap
) -> None:
    """Two consumers with one ``group.instance.id``: the second replaces the
    first, whose requests then get FENCED_INSTANCE_ID, as from Kafka: its
    commit fails with the client's fenced error (librdkafka makes it fatal).
    (aiokafka sends Heartbeat v0-1 and OffsetCommit v2, without the instance
    id: it gets UNKNOWN_MEMBER_ID and rejoins, as it would from Kafka.)"""
    kafka = minibroker_kafka_bootstrap
    client = next(each for each in CLIENTS if each.name == client_name)
    client.create_topic(kafka, "jobs", 1)
    if client_name == "confluent-kafka":
        _confluent_fenced(kafka)
    else:
        _kafka_python_fenced(kafka)


def _confluent_fenced(kafka: KafkaBootstrap) -> None:
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    static = {
        "group.instance.id": "worker-1",
        "session.timeout.ms": STATIC_SESSION_MS,
        "enable.auto.commit": False,
    }
    consumers = []
    for _ in range(2):
        consumer = Confluent().consumer(kafka, "fenced", **static)
        consumer.subscribe(["jobs"])
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            assert time.monotonic() < deadline, "no assignment"
            consumer.poll(0.05)
        consumers.append(consumer)
    old, new = consumers
    with pytest.raises(KafkaException) as raised:
        old.commit(offsets=[TopicPartition("jobs", 0, 0)], asynchronous=False)
    error = raised.value.args[0]
    # librdkafka makes FENCED_INSTANCE_ID fatal: depending on whether a heartbeat
    # or the commit meets it first, the commit fails with it or with the
    # generic _FATAL (whose text does not name the cause). The old broker
    # answered UNKNOWN_MEMBER_ID, which is neither.
    assert error.code() in (KafkaError.FENCED_INSTANCE_ID, KafkaError._FATAL), error
    new.commit(offsets=[TopicPartition("jobs", 0, 0)], asynchronous=False)
    new.close()
    old.close()


def _kafka_python_fenced(kafka: KafkaBootstrap) -> None:
    from kafka import TopicPartition
    from kafka.errors import FencedInstanceIdError
    from kafka.structs import OffsetAndMetadata

    consumers = []
    for _ in range(2):
        consumer = KafkaPython().consumer(
            kafka,
            "jobs",
            group_id="fenced",
            group_instance_id="worker-1",
            session_timeout_ms=STATIC_SESSION_MS,
            enable_auto_commit=False,
        )
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            assert time.monotonic() < deadline, "no assignment"
            consumer.poll(timeout_ms=50)
        consumers.append(consumer)
    old, new = consumers
    offsets = {TopicPartition("jobs", 0): OffsetAndMetadata(0, "", -1)}
    with pytest.raises(FencedInstanceIdError):
        old.commit(offsets)
    new.commit(offsets)
    new.close()
    old.close()


def test_a_group_resumes_from_its_commit_after_a_restart_on_a_data_dir(
    client: KafkaClient, tmp_path: Path
) -> None:
    values = [b"before-%d" % i for i in range(6)]
    with run_in_thread(kafka_port=0, data_dir=tmp_path) as server:
        kafka = KafkaBootstrap(server.kafka_bootstrap, "durable")
        client.produce(kafka, "ledger", values)
        assert client.consume(kafka, "ledger", "auditors", 6, manual=True) == values
    later = [b"after-%d" % i for i in range(4)]
    with run_in_thread(kafka_port=0, data_dir=tmp_path) as server:
        kafka = KafkaBootstrap(server.kafka_bootstrap, "durable")
        client.produce(kafka, "ledger", later)
        assert client.consume(kafka, "ledger", "auditors", 4, manual=True) == later
        assert _log(server, kafka, "ledger-0").groups["auditors"].committed == 10
