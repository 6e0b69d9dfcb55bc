"""The Kafka session without a socket: golden bytes, every API version, ordering, bad input."""

from __future__ import annotations

import gzip
import struct
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from kafka_wire.test_records import EPOCH_MS, _compressed, kio_batch
from kafka_wire.wire_helpers import (
    ONE_SECOND,
    PORT,
    call,
    encode_request,
    frame,
    open_session,
    request_class,
    responses,
)
from minibroker.access.auth import Authenticator
from minibroker.access.permissions import Permissions
from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig, Limits
from minibroker.kafka import records as records_module
from minibroker.kafka import wire
from minibroker.kafka.entries import count_entries
from minibroker.kafka.groups import JoinResult
from minibroker.kafka.handlers import produce as produce_module
from minibroker.kafka.producers import REMEMBERED
from minibroker.kafka.records import MAX_RECORD_HEADERS, encode_batch
from minibroker.kafka.service import KafkaService, KafkaSettings
from minibroker.kafka.session import KafkaSession
from minibroker.log_store import Record as LogRecord
from minibroker.storage import kafka_compression as compression
from minibroker.storage.memory import MemoryLog

#: The ApiVersions answer, byte for byte: (key, min, max) for the 28 APIs.
ADVERTISED_BYTES = b"".join(
    struct.pack(">hhh", *entry)
    for entry in [
        (0, 0, 7),
        (1, 4, 11),
        (2, 1, 5),
        (3, 0, 5),
        (8, 2, 7),
        (9, 1, 5),
        (10, 0, 2),
        (11, 0, 5),
        (12, 0, 3),
        (13, 0, 3),
        (14, 0, 3),
        (15, 0, 2),
        (16, 0, 4),
        (17, 1, 1),
        (18, 0, 2),
        (19, 2, 4),
        (20, 1, 3),
        (21, 0, 1),
        (22, 0, 1),
        (29, 1, 1),
        (30, 1, 1),
        (31, 1, 1),
        (32, 1, 3),
        (33, 0, 1),
        (36, 0, 1),
        (37, 0, 1),
        (42, 0, 1),
        (44, 0, 0),
        (47, 0, 0),
    ]
)


def test_golden_api_versions_v0() -> None:
    session = open_session()
    session.receive_data(bytes.fromhex("0000000c 0012 0000 00000007 0002 7463".replace(" ", "")))
    assert session.data_to_send() == (
        struct.pack(">iihi", 4 + 2 + 4 + len(ADVERTISED_BYTES), 7, 0, 29) + ADVERTISED_BYTES
    )


def test_golden_api_versions_v3_gets_unsupported_version_in_a_v0_body() -> None:
    """librdkafka opens with the flexible v3; the answer makes it fall back (KIP-511)."""
    session = open_session()
    # header v2: key 18, version 3, correlation 9, client id "c", no tagged fields;
    # body: compact strings "librdkafka", "2.16" and no tagged fields.
    body = b"\x0blibrdkafka\x052.16\x00"
    header = bytes.fromhex("0012 0003 00000009 0001 63 00".replace(" ", ""))
    session.receive_data(struct.pack(">i", len(header) + len(body)) + header + body)
    assert session.data_to_send() == (
        struct.pack(">iihi", 4 + 2 + 4 + len(ADVERTISED_BYTES), 9, 35, 29) + ADVERTISED_BYTES
    )


def test_golden_metadata_v0_auto_creates_the_topic() -> None:
    session = open_session()
    session.receive_data(
        bytes.fromhex("00000014 0003 0000 00000002 0003 6e2f63 00000001 0001 74".replace(" ", ""))
    )
    body = (
        struct.pack(">i", 1)  # brokers
        + struct.pack(">ih", 0, 9)
        + b"127.0.0.1"
        + struct.pack(">i", PORT)
        + struct.pack(">i", 1)  # topics
        + struct.pack(">hh", 0, 1)
        + b"t"
        + struct.pack(">i", 1)  # partitions
        + struct.pack(">hii", 0, 0, 0)
        + struct.pack(">ii", 1, 0)  # replicas
        + struct.pack(">ii", 1, 0)  # isr
    )
    assert session.data_to_send() == struct.pack(">ii", 4 + len(body), 2) + body
    assert "t-0" in session.broker.namespace("n").logs


def test_golden_produce_v3_then_fetch_v4() -> None:
    session = open_session()
    batch = kio_batch([(b"k", b"hello", {})])
    topic = struct.pack(">h", 1) + b"t"
    produce = struct.pack(">hhi", -1, -1, 1000) + struct.pack(">i", 1) + topic
    produce += struct.pack(">iii", 1, 0, len(batch)) + batch
    session.receive_data(frame(0, 3, produce, correlation_id=5))
    expected = (
        struct.pack(">i", 1)
        + topic
        + struct.pack(">i", 1)
        + struct.pack(">ihqq", 0, 0, 0, -1)  # partition 0, no error, base offset 0, no append time
        + struct.pack(">i", 0)  # throttle
    )
    assert session.data_to_send() == struct.pack(">ii", 4 + len(expected), 5) + expected
    fetch = struct.pack(">iiiib", -1, 0, 1, 1 << 20, 0) + struct.pack(">i", 1) + topic
    fetch += struct.pack(">iiqi", 1, 0, 0, 1 << 20)
    session.receive_data(frame(1, 4, fetch, correlation_id=6))
    [(correlation_id, body)] = responses(session)
    assert correlation_id == 6
    head = (
        struct.pack(">ii", 0, 1)
        + topic
        + struct.pack(">iihqq", 1, 0, 0, 1, 1)
        + struct.pack(">i", 0)
    )
    assert body.startswith(head)
    records = body[len(head) + 4 :]
    assert struct.unpack_from(">i", body, len(head))[0] == len(records)
    assert struct.unpack_from(">qib", records, 0) == (0, len(records) - 12, 0) and records[16] == 2
    assert records.endswith(b"\x02k\x0ahello\x00")


def test_unknown_apis_and_versions_get_unsupported_version_and_the_connection_stays() -> None:
    session = open_session()
    session.receive_data(frame(71, 0, b"", correlation_id=1))  # telemetry: not advertised
    session.receive_data(frame(0, 2, b"\x00" * 10, correlation_id=2))  # Produce v2: too old
    session.receive_data(frame(18, 0, b"", correlation_id=3))
    answers = responses(session)
    assert answers[:2] == [(1, b"\x00\x23"), (2, b"\x00\x23")]
    assert answers[2][0] == 3 and session.closing is None


def _all_error_codes(value: Any) -> list[ErrorCode]:
    if isinstance(value, ErrorCode):
        return [value]
    if isinstance(value, tuple):
        return [code for item in value for code in _all_error_codes(item)]
    slots = getattr(type(value), "__dataclass_fields__", None)
    if slots is None:
        return []
    return [code for name in slots for code in _all_error_codes(getattr(value, name))]


def _request(api_key: int, version: int, member: JoinResult) -> dict[str, Any]:
    """A representative request of every API, as field values (each version keeps its own)."""

    def nested(entity: str, **values: Any) -> Any:
        return wire.build(request_class(api_key, version, entity), **values)

    group = {"group_id": "g", "generation_id": member.generation, "member_id": member.member_id}
    group["group_instance_id"] = None
    return {
        0: lambda: {
            "transactional_id": None,
            "acks": -1,
            "timeout": ONE_SECOND,
            "topic_data": (
                nested(
                    "TopicProduceData",
                    name="t",
                    partition_data=(
                        nested(
                            "PartitionProduceData", index=0, records=kio_batch([(None, b"x", {})])
                        ),
                    ),
                ),
            ),
        },
        1: lambda: {
            "replica_id": -1,
            "max_wait": timedelta(0),
            "min_bytes": 1,
            "max_bytes": 1 << 20,
            "isolation_level": 0,
            "session_id": 0,
            "session_epoch": -1,
            "topics": (
                nested(
                    "FetchTopic",
                    topic="t",
                    partitions=(
                        nested(
                            "FetchPartition",
                            partition=0,
                            current_leader_epoch=-1,
                            fetch_offset=0,
                            log_start_offset=-1,
                            partition_max_bytes=1 << 20,
                        ),
                    ),
                ),
            ),
            "forgotten_topics_data": (),
            "rack_id": "",
        },
        2: lambda: {
            "replica_id": -1,
            "isolation_level": 0,
            "topics": (
                nested(
                    "ListOffsetsTopic",
                    name="t",
                    partitions=(
                        nested(
                            "ListOffsetsPartition",
                            partition_index=0,
                            current_leader_epoch=-1,
                            timestamp=-1,
                        ),
                    ),
                ),
            ),
        },
        3: lambda: {
            "topics": (nested("MetadataRequestTopic", name="t"),),
            "allow_auto_topic_creation": True,
        },
        8: lambda: {
            **group,
            "generation_id_or_member_epoch": member.generation,
            "retention_time": timedelta(milliseconds=-1),
            "topics": (
                nested(
                    "OffsetCommitRequestTopic",
                    name="t",
                    partitions=(
                        nested(
                            "OffsetCommitRequestPartition",
                            partition_index=0,
                            committed_offset=1,
                            committed_leader_epoch=-1,
                            committed_metadata="m",
                        ),
                    ),
                ),
            ),
        },
        9: lambda: {
            "group_id": "g",
            "topics": (nested("OffsetFetchRequestTopic", name="t", partition_indexes=(0,)),),
        },
        10: lambda: {"key": "g", "key_type": 0},
        11: lambda: {
            "group_id": "g2",
            "session_timeout": timedelta(seconds=10),
            "rebalance_timeout": timedelta(seconds=10),
            "member_id": "",
            "group_instance_id": None,
            "protocol_type": "consumer",
            "protocols": (nested("JoinGroupRequestProtocol", name="range", metadata=b"m"),),
        },
        12: lambda: group,
        13: lambda: {
            "group_id": "g",
            "member_id": member.member_id,
            "members": (nested("MemberIdentity", member_id=member.member_id),)
            if version >= 3
            else (),
        },
        14: lambda: {
            **group,
            "assignments": (
                nested("SyncGroupRequestAssignment", member_id=member.member_id, assignment=b"a"),
            ),
        },
        18: lambda: {"client_software_name": "x", "client_software_version": "1"},
        19: lambda: {
            "topics": (
                nested(
                    "CreatableTopic",
                    name="new",
                    num_partitions=3,
                    replication_factor=1,
                    assignments=(),
                    configs=(),
                ),
            ),
            "timeout": ONE_SECOND,
            "validate_only": False,
        },
        15: lambda: {"groups": ("g",), "include_authorized_operations": False},
        16: lambda: {},
        17: lambda: {"mechanism": "PLAIN"},
        20: lambda: {"topic_names": ("t",), "timeout": ONE_SECOND},
        21: lambda: {
            "topics": (
                nested(
                    "DeleteRecordsTopic",
                    name="t",
                    partitions=(nested("DeleteRecordsPartition", partition_index=0, offset=1),),
                ),
            ),
            "timeout": ONE_SECOND,
        },
        22: lambda: {"transactional_id": None, "transaction_timeout": ONE_SECOND},
        # prepared_session gives these a permissions file (acls.py needs one).
        29: lambda: {
            "resource_type_filter": 1,  # ANY
            "resource_name_filter": None,
            "pattern_type_filter": 1,
            "principal_filter": None,
            "host_filter": None,
            "operation": 1,
            "permission_type": 1,
        },
        30: lambda: {
            "creations": (
                nested(
                    "AclCreation",
                    resource_type=2,
                    resource_name="t",
                    resource_pattern_type=3,
                    principal="User:app",
                    host="*",
                    operation=3,
                    permission_type=3,
                ),
            )
        },
        31: lambda: {
            "filters": (
                nested(
                    "DeleteAclsFilter",
                    resource_type_filter=2,
                    resource_name_filter="t",
                    pattern_type_filter=3,
                    principal_filter=None,
                    host_filter=None,
                    operation=1,
                    permission_type=1,
                ),
            )
        },
        32: lambda: {
            "resources": (
                nested(
                    "DescribeConfigsResource",
                    resource_type=2,
                    resource_name="t",
                    configuration_keys=None,
                ),
            ),
            "include_synonyms": False,
            "include_documentation": True,
        },
        33: lambda: {
            "resources": (
                nested(
                    "AlterConfigsResource",
                    resource_type=2,
                    resource_name="t",
                    configs=(nested("AlterableConfig", name="retention.ms", value="60000"),),
                ),
            ),
            "validate_only": False,
        },
        44: lambda: {
            "resources": (
                nested(
                    "AlterConfigsResource",
                    resource_type=2,
                    resource_name="t",
                    configs=(
                        nested(
                            "AlterableConfig",
                            name="retention.bytes",
                            config_operation=0,
                            value="1048576",
                        ),
                    ),
                ),
            ),
            "validate_only": False,
        },
        # After the SaslHandshake that prepared_session(36) sends.
        36: lambda: {"auth_bytes": b"\x00user\x00password"},
        37: lambda: {
            "topics": (nested("CreatePartitionsTopic", name="t", count=3, assignments=None),),
            "timeout": ONE_SECOND,
            "validate_only": False,
        },
        # prepared_session gives these a group "old" known by its offset only.
        42: lambda: {"groups_names": ("old",)},
        47: lambda: {
            "group_id": "old",
            "topics": (
                nested(
                    "OffsetDeleteRequestTopic",
                    name="t",
                    partitions=(nested("OffsetDeleteRequestPartition", partition_index=0),),
                ),
            ),
        },
    }[api_key]()


VERSIONS = [
    (key, version)
    for key, (low, high) in wire.IMPLEMENTED.items()
    for version in range(low, high + 1)
]


#: The ACL APIs answer from a permissions file (without one: SECURITY_DISABLED).
ACL_PERMISSIONS = "allow anonymous all #\nallow app read log:t-0 group:g\n"
#: What answers other than NONE the representative requests get, by API.
EXPECTED_ERRORS = {30: {ErrorCode(44)}, 31: {ErrorCode(44)}}  # ACLs are read-only


def prepared_session(api_key: int = 0) -> tuple[KafkaSession, JoinResult]:
    """A fresh broker with topic ``t`` (two records) and a stable group ``g`` of one;
    for a SaslAuthenticate (36), after a SaslHandshake for PLAIN; for the ACL
    APIs (29-31), with a permissions file."""
    broker = Broker(memory_log=MemoryLog)
    if api_key in (29, 30, 31):
        permissions = Permissions.parse(ACL_PERMISSIONS)
        service = KafkaService(
            broker, KafkaSettings(), lambda: PORT, Authenticator(permissions=permissions)
        )
        session = service.make_session(broker, 1, "test")
    else:
        session = open_session(broker)
    call(session, 3, 0, topics=(wire.build(request_class(3, 0, "MetadataRequestTopic"), name="t"),))
    if api_key == 36:
        call(session, 17, 1, mechanism="PLAIN")
    broker.namespace("t").logs.append("t-0", [b"a", b"b"], 0.0)
    if api_key in (42, 47):
        broker.namespace("t").logs.commit("t-0", "old", 1, 0.0)
    joined: list[JoinResult] = []
    groups = session.ns.groups
    groups.join("g", "", "c", 10.0, 10.0, "consumer", [("range", b"m")], joined.append, 0.0)
    member = joined[0]
    groups.sync("g", 1, member.member_id, [(member.member_id, b"p")], lambda *_: None, 0.0)
    return session, member


@pytest.mark.parametrize(("api_key", "version"), VERSIONS)
def test_every_implemented_version_is_decoded_and_answered(api_key: int, version: int) -> None:
    session, member = prepared_session(api_key)
    response = call(
        session, api_key, version, correlation_id=40 + version, **_request(api_key, version, member)
    )
    assert _all_error_codes(response), "every answer carries an error code"
    assert set(_all_error_codes(response)) == EXPECTED_ERRORS.get(api_key, {ErrorCode.none})


def test_answers_keep_request_order_behind_a_parked_fetch() -> None:
    session = open_session()
    call(session, 3, 0, topics=(wire.build(request_class(3, 0, "MetadataRequestTopic"), name="t"),))
    values = _request(1, 4, JoinResult(0))
    values["max_wait"] = timedelta(seconds=5)
    session.receive_data(frame(1, 4, encode_request(1, 4, **values), correlation_id=10))
    session.receive_data(frame(18, 0, b"", correlation_id=11))
    assert responses(session) == []  # the metadata answer waits behind the fetch
    session.ns.core.logs.append("t-0", [b"x"], 0.0)
    assert [cid for cid, _ in responses(session)] == [10, 11]


def test_a_parked_fetch_is_answered_empty_when_its_wait_runs_out() -> None:
    broker = Broker(memory_log=MemoryLog)
    session = open_session(broker)
    call(session, 3, 0, topics=(wire.build(request_class(3, 0, "MetadataRequestTopic"), name="t"),))
    values = _request(1, 11, JoinResult(0))
    values["max_wait"] = timedelta(milliseconds=500)
    session.receive_data(frame(1, 11, encode_request(1, 11, **values), correlation_id=3))
    assert responses(session) == []
    assert len(broker.namespace("t").logs.get("t-0").waiters) == 1
    broker.on_time(0.5)
    [(correlation_id, _)] = responses(session)
    assert correlation_id == 3
    assert not broker.namespace("t").logs.get("t-0").waiters


def test_acks_0_gets_no_answer_but_the_records_are_stored() -> None:
    session = open_session()
    values = _request(0, 7, JoinResult(0))
    values["acks"] = 0
    session.receive_data(frame(0, 7, encode_request(0, 7, **values), correlation_id=1))
    session.receive_data(frame(18, 0, b"", correlation_id=2))
    assert [cid for cid, _ in responses(session)] == [2]
    assert session.ns.core.logs.get("t-0").high_watermark == 1


@pytest.mark.parametrize("acks", [2, 5, -2])
def test_acks_other_than_0_1_all_is_refused_and_nothing_is_stored_or_created(acks: int) -> None:
    """Kafka answers INVALID_REQUIRED_ACKS for every partition and appends nothing."""
    session = open_session()
    values = _request(0, 7, JoinResult(0))
    values["acks"] = acks
    response = call(session, 0, 7, **values)
    [partition] = response.responses[0].partition_responses
    assert (partition.error_code, partition.base_offset) == (ErrorCode.invalid_required_acks, -1)
    assert "t-0" not in session.ns.core.logs  # not even auto-created


def test_a_record_with_too_many_headers_is_refused_and_nothing_is_stored() -> None:
    session = open_session()
    values = _request(0, 7, JoinResult(0))
    headers = {f"h{i}": b"" for i in range(MAX_RECORD_HEADERS + 1)}
    batch = kio_batch([(None, b"x", {}), (None, b"y", headers)])
    partition = request_class(0, 7, "PartitionProduceData")(index=0, records=batch)
    values["topic_data"] = (
        request_class(0, 7, "TopicProduceData")(name="t", partition_data=(partition,)),
    )
    [answer] = call(session, 0, 7, **values).responses[0].partition_responses
    assert (answer.error_code, answer.base_offset) == (ErrorCode.invalid_record, -1)
    assert session.ns.core.logs.get("t-0").high_watermark == 0


def test_an_idempotent_retry_is_answered_with_the_first_offset_and_stored_once() -> None:
    session = open_session()
    values = _request(0, 7, JoinResult(0))
    batch = kio_batch([(None, b"x", {}), (None, b"y", {})], producer_id=42, base_sequence=0)
    partition = request_class(0, 7, "PartitionProduceData")(index=0, records=batch)
    values["topic_data"] = (
        request_class(0, 7, "TopicProduceData")(name="t", partition_data=(partition,)),
    )
    offsets = [
        call(session, 0, 7, **values).responses[0].partition_responses[0].base_offset
        for _ in range(2)
    ]
    assert offsets == [0, 0]
    assert session.ns.core.logs.get("t-0").high_watermark == 2
    gap = kio_batch([(None, b"z", {})], producer_id=42, base_sequence=5)
    values["topic_data"] = (
        request_class(0, 7, "TopicProduceData")(
            name="t",
            partition_data=(request_class(0, 7, "PartitionProduceData")(index=0, records=gap),),
        ),
    )
    assert call(session, 0, 7, **values).responses[0].partition_responses[
        0
    ].error_code == ErrorCode(45)


def _produce_one(session: KafkaSession, batch: bytes) -> Any:
    values = _request(0, 7, JoinResult(0))
    partition = request_class(0, 7, "PartitionProduceData")(index=0, records=batch)
    values["topic_data"] = (
        request_class(0, 7, "TopicProduceData")(name="t", partition_data=(partition,)),
    )
    return call(session, 0, 7, **values).responses[0].partition_responses[0]


def test_an_idempotent_retry_after_a_restart_is_recognised_from_the_log() -> None:
    """A batch stored just before a crash, whose answer never reached the
    producer, is sent again once the broker is back: it must not be stored
    twice (Kafka rebuilds its producer state from the log at start-up). A new
    front end on the same logs is the restarted broker."""
    broker = Broker(memory_log=MemoryLog)
    before = open_session(broker)
    first = kio_batch([(None, b"x", {}), (None, b"y", {})], producer_id=42, base_sequence=0)
    other = kio_batch([(None, b"o", {})], producer_id=7, base_sequence=0)
    second = kio_batch([(None, b"z", {})], producer_id=42, base_sequence=2)
    assert [_produce_one(before, b).base_offset for b in (first, other, second)] == [0, 2, 3]

    after = open_session(broker)
    assert _produce_one(after, second).base_offset == 3
    assert _produce_one(after, first).base_offset == 0
    assert after.ns.core.logs.get("t-0").high_watermark == 4
    # The sequence state came back too: a gap is still a gap, the next batch is next.
    gap = kio_batch([(None, b"g", {})], producer_id=42, base_sequence=9)
    assert _produce_one(after, gap).error_code == ErrorCode(45)
    following = kio_batch([(None, b"n", {})], producer_id=42, base_sequence=3)
    assert _produce_one(after, following).base_offset == 4


def test_after_a_restart_a_tail_too_large_to_read_whole_still_gives_the_newest_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = Broker(memory_log=MemoryLog)
    before = open_session(broker)
    batches = [
        kio_batch([(None, b"v" * 200, {})], producer_id=42, base_sequence=seq)
        for seq in range(40)
    ]
    for batch in batches:
        _produce_one(before, batch)
    # Room for about ten of the forty batches: the windows of 1 and 8 records
    # fit, the one of 64 does not, so the last eight batches are read (and
    # the last five of them remembered, as for batches that just came).
    monkeypatch.setattr(produce_module, "TAIL_BYTES", 10 * len(batches[0]))
    after = open_session(broker)
    assert _produce_one(after, batches[-1]).base_offset == 39
    assert _produce_one(after, batches[-REMEMBERED]).base_offset == 40 - REMEMBERED
    assert after.ns.core.logs.get("t-0").high_watermark == 40


def test_auto_create_can_be_switched_off() -> None:
    session = open_session(auto_create_topics=False)
    response = call(
        session,
        3,
        5,
        topics=(wire.build(request_class(3, 5, "MetadataRequestTopic"), name="t"),),
        allow_auto_topic_creation=True,
    )
    assert response.topics[0].error_code == ErrorCode.unknown_topic_or_partition


def test_an_oversized_frame_closes_only_that_connection_before_its_body_arrives() -> None:
    session = open_session(max_request_bytes=1000)
    session.receive_data(struct.pack(">i", 5000) + b"\x00" * 10)
    assert session.closing is not None and "1000-byte limit" in session.closing.message


def test_a_request_body_kio_cannot_decode_closes_the_connection() -> None:
    session = open_session()
    session.receive_data(frame(3, 1, b"\x00\x00\x00\x05\x00"))
    assert session.closing is not None and "Metadata" in session.closing.message


@given(st.sampled_from(VERSIONS), st.binary(max_size=300))
def test_fuzzed_request_bodies_never_break_the_session(
    api_version: tuple[int, int], body: bytes
) -> None:
    session = open_session()
    api_key, version = api_version
    session.receive_data(frame(api_key, version, body, correlation_id=1))
    session.receive_data(frame(18, 0, b"", correlation_id=2))
    answered = [cid for cid, _ in responses(session)]
    # Garbage closes the connection (never through a handler's failure); anything
    # else is answered in order, except a Produce with acks=0 (no answer) and
    # requests that wait (Fetch, JoinGroup).
    if session.closing is not None:
        assert not session.closing.message.startswith("internal error"), session.closing.message
    assert (
        session.closing is not None
        or answered == [1, 2]
        or (api_key == 0 and answered == [2])
        or (api_key in (1, 11, 14) and answered == [])
    )


@given(st.binary(max_size=500))
def test_fuzzed_byte_streams_never_break_the_session(data: bytes) -> None:
    session = open_session()
    session.receive_data(data)
    session.data_to_send()


def test_with_a_data_dir_produce_is_answered_only_after_the_group_commit(tmp_path: Path) -> None:
    from minibroker.server.datadir import DataDirectory

    broker = Broker(storage=DataDirectory(tmp_path), memory_log=MemoryLog)
    session = open_session(broker)
    session.receive_data(frame(0, 7, encode_request(0, 7, **_request(0, 7, JoinResult(0))), 1))
    session.receive_data(frame(18, 0, b"", correlation_id=2))
    assert responses(session) == []  # appended, not yet fsynced: no confirm, nothing after it
    assert broker.namespace("t").logs.get("t-0").high_watermark == 0
    broker.durability.sync()
    assert [cid for cid, _ in responses(session)] == [1, 2]
    assert broker.namespace("t").logs.get("t-0").high_watermark == 1
    broker.close()


def test_dropping_a_namespace_closes_its_kafka_connections_and_forgets_its_state() -> None:
    broker = Broker(memory_log=MemoryLog)
    session = open_session(broker)
    session.receive_data(frame(18, 0, b"", client_id="gone/app"))
    assert broker.drop_namespace("gone")
    assert session.closing is not None and "dropped" in session.closing.message
    other = session.service.make_session(broker, 2, "test")
    other.receive_data(frame(18, 0, b"", client_id="next/app"))
    assert "gone" not in session.service._namespaces


def test_the_session_reports_its_partial_request_to_the_shells_budget() -> None:
    session = open_session()
    request = frame(18, 0, b"")
    session.receive_data(request[:2])
    assert (session.pending_input_bytes, session.buffered_input_bytes) == (2, 2)
    session.receive_data(request[2:6])  # the size prefix is in: the whole request is claimed
    assert session.pending_input_bytes == len(request)
    session.discard_input()
    assert (session.pending_input_bytes, session.buffered_input_bytes) == (0, 0)


@pytest.mark.parametrize(
    ("api_key", "version", "body"),
    [
        # Produce v3: transactional_id null, acks 1, timeout 1000, topic_data null.
        (0, 3, struct.pack(">hhii", -1, 1, 1000, -1)),
        # Fetch v4: replica -1, max_wait 100, min_bytes 1, max_bytes 1000, isolation 0, topics null.
        (1, 4, struct.pack(">iiiibi", -1, 100, 1, 1000, 0, -1)),
        # ListOffsets v1: replica -1, topics null.
        (2, 1, struct.pack(">ii", -1, -1)),
        # Produce v3 with one topic whose partition_data is null (a nested array).
        (0, 3, struct.pack(">hhii", -1, 1, 1000, 1) + struct.pack(">h", 1) + b"t" + b"\xff" * 4),
    ],
)
def test_a_null_array_the_schema_does_not_allow_closes_the_connection_as_malformed(
    api_key: int, version: int, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # kio decodes an array length of -1 as None even where the schema forbids
    # it; the handlers used to crash iterating it (a logged internal error).
    session = open_session()
    session.receive_data(frame(api_key, version, body))
    assert session.closing is not None
    assert "is null, which is not allowed" in session.closing.message
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


def _offset_fetch_v1(partitions: int) -> bytes:
    """OffsetFetch v1 of group "g" naming ``partitions`` partitions of topic "t"."""
    head = struct.pack(">h", 1) + b"g" + struct.pack(">ih", 1, 1) + b"t"
    return head + struct.pack(">i", partitions) + struct.pack(">i", 0) * partitions


def _metadata_v4(topics: int) -> bytes:
    """Metadata v4 naming ``topics`` topics (a nullable array), no auto-creation."""
    return struct.pack(">i", topics) + (struct.pack(">h", 1) + b"x") * topics + b"\x00"


@pytest.mark.parametrize(
    ("api_key", "version", "body_of"),
    [(9, 1, lambda n: _offset_fetch_v1(n - 1)), (3, 4, _metadata_v4)],
)
def test_a_request_naming_more_entries_than_the_bound_closes_the_connection(
    api_key: int, version: int, body_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An 8 MB OffsetFetch naming 2,000,000 partitions held the event loop, and
    every connection on every port, for 28 s while its answer was built."""
    monkeypatch.setattr(wire, "MAX_REQUEST_ENTRIES", 50)
    session = open_session()
    session.receive_data(frame(api_key, version, body_of(50), correlation_id=1))
    [(correlation_id, _)] = responses(session)
    assert correlation_id == 1 and session.closing is None
    session.receive_data(frame(api_key, version, body_of(51), correlation_id=2))
    assert session.closing is not None
    assert "names more than 50 entries" in session.closing.message
    assert responses(session) == []


@pytest.mark.parametrize(
    ("api_key", "version", "body"),
    [
        (3, 4, _metadata_v4(200_000)),
        # the array claims 2**31 - 1 entries; the frame holds 100,001
        (
            9,
            1,
            _offset_fetch_v1(100_001)[: -4 * 100_001 - 4]
            + struct.pack(">i", 2**31 - 1)
            + struct.pack(">i", 0) * 100_001,
        ),
    ],
)
def test_a_request_naming_too_many_entries_is_refused_before_kio_decodes_it(
    api_key: int, version: int, body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kio builds an object per entry before the count could be checked: a
    10 MB Metadata request naming 5,000,000 empty topic names held every
    client of the server for 8.4 s (a 100 MiB one, the request limit, for
    over a minute). The arrays' lengths are now counted on the bytes first."""
    decoded: list[tuple[int, int]] = []
    reader = wire.request_reader

    def spy(api_key: int, version: int) -> Any:
        decoded.append((api_key, version))
        return reader(api_key, version)

    monkeypatch.setattr(wire, "request_reader", spy)
    session = open_session()
    session.receive_data(frame(api_key, version, body))
    assert session.closing is not None
    assert "names more than 100000 entries" in session.closing.message
    assert decoded == []


def _golden_requests() -> list[tuple[int, bytes]]:
    """Every recorded golden request frame, with its API key."""
    import json

    golden = json.loads((Path(__file__).with_name("golden.json")).read_text())
    return [
        (int(key.split(".")[0]), bytes.fromhex(exchange["request"]))
        for key, exchange in sorted(golden.items())
    ]


@given(
    st.sampled_from(_golden_requests()),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=6),
)
def test_entries_counted_on_the_bytes_are_the_ones_kio_decodes(
    golden: tuple[int, bytes], flips: list[tuple[int, int]]
) -> None:
    """``kafka/entries.py`` walks the schema over the bytes as kio reads them:
    on every request kio decodes whole, it counts the same entries."""
    _, request = golden
    data = bytearray(request[4:])
    header = wire.parse_header(bytes(data))
    body_size = len(data) - header.body_offset
    for position, value in flips if body_size else ():  # the header stays valid
        data[header.body_offset + position % body_size] = value
    cls = load_request_schema(header.api_key, header.api_version)
    try:
        decoded, size = entity_reader(cls)(bytes(data), header.body_offset)
    except Exception:
        return  # kio refuses it: the session closes the connection either way
    if header.body_offset + size != len(data):
        return
    expected = wire._check_entity(decoded, wire.MAX_REQUEST_ENTRIES)
    if expected >= 0:
        counted = count_entries(cls, bytes(data), header.body_offset, wire.MAX_REQUEST_ENTRIES)
        assert counted == expected


@given(
    st.sampled_from(_golden_requests()),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=6),
    st.integers(min_value=0),
)
def test_mutated_valid_requests_are_answered_or_refused_never_crash_a_handler(
    golden: tuple[int, bytes], flips: list[tuple[int, int]], cut: int
) -> None:
    """Random bytes rarely get past the first field; a valid request with a few
    bytes changed (counts, lengths, indexes, error-prone values) reaches the
    handlers. Whatever it becomes, the session answers it or closes as for a
    malformed request: no handler may fail on it (an internal error)."""
    api_key, request = golden
    data = bytearray(request)
    for position, value in flips:
        index = 4 + position % max(len(data) - 4, 1)  # keep the size prefix
        data[index] = value
    body_end = 4 + cut % max(len(data) - 3, 1)
    data = data[:body_end]
    data[:4] = struct.pack(">i", len(data) - 4)
    session, _ = prepared_session(api_key)
    session.receive_data(bytes(data))
    session.receive_data(frame(18, 0, b"", correlation_id=99))
    session.data_to_send()
    if session.closing is not None:
        assert not session.closing.message.startswith("internal error"), session.closing.message


def _produce_v3(session: KafkaSession, batch: bytes, correlation_id: int) -> None:
    topic = struct.pack(">h", 1) + b"t"
    produce = struct.pack(">hhi", -1, -1, 1000) + struct.pack(">i", 1) + topic
    produce += struct.pack(">iii", 1, 0, len(batch)) + batch
    session.receive_data(frame(0, 3, produce, correlation_id=correlation_id))


def _fetched_records(session: KafkaSession, offset: int, correlation_id: int) -> bytes:
    topic = struct.pack(">h", 1) + b"t"
    fetch = struct.pack(">iiiib", -1, 0, 1, 1 << 20, 0) + struct.pack(">i", 1) + topic
    fetch += struct.pack(">iiqi", 1, 0, offset, 1 << 20)
    session.receive_data(frame(1, 4, fetch, correlation_id=correlation_id))
    [(_, body)] = responses(session)
    head = 4 + 4 + len(topic) + 4 + struct.calcsize(">ihqq") + 4  # up to the record set's size
    (size,) = struct.unpack_from(">i", body, head)
    return body[head + 4 : head + 4 + size]


def test_a_batch_over_the_record_bound_is_refused_before_its_records_are_walked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The core refuses an append of more than ``max_batch`` records; the
    front end walked every record of such a batch first: 200,000 empty
    records (1.8 MB) took 1.2 s of the event loop every client shares to be
    refused, and a 100 MiB request holds a hundred such batches."""
    walked: list[int] = []
    check = records_module._check_records

    def spy(body: bytes, pos: int, count: int) -> int:
        walked.append(count)
        return check(body, pos, count)

    monkeypatch.setattr(records_module, "_check_records", spy)
    session = open_session(Broker(CoreConfig(limits=Limits(max_batch=10)), memory_log=MemoryLog))
    _produce_v3(session, kio_batch([(None, b"x", {})] * 10), 1)
    _produce_v3(session, kio_batch([(None, b"x", {})] * 11), 2)
    answers = [wire.decode_response(0, 3, body) for _, body in responses(session)]
    errors = [answer.responses[0].partition_responses[0].error_code for answer in answers]
    assert errors == [ErrorCode(0), ErrorCode(87)]  # INVALID_RECORD, as the core answered
    assert walked == [10]


def test_a_produce_request_over_the_record_bound_is_refused_whole_before_any_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches under the per-batch bound still add up: a 17.8 MB request of
    20 batches of 100,000 empty records held every client up for 7.5 s
    (a 100 MiB one for most of a minute). The records the batches' headers
    claim are added up first; past the bound every partition is answered
    MESSAGE_TOO_LARGE and nothing is created or stored."""
    walked: list[int] = []
    check = records_module._check_records

    def spy(body: bytes, pos: int, count: int) -> int:
        walked.append(count)
        return check(body, pos, count)

    monkeypatch.setattr(records_module, "_check_records", spy)
    monkeypatch.setattr(produce_module, "MAX_REQUEST_RECORDS", 20, raising=False)
    session = open_session(default_partitions=2)
    batch = kio_batch([(None, b"x", {})] * 11)
    topic = struct.pack(">h", 1) + b"t"
    body = struct.pack(">hhi", -1, -1, 1000) + struct.pack(">i", 1) + topic + struct.pack(">i", 2)
    body += b"".join(struct.pack(">ii", index, len(batch)) + batch for index in (0, 1))
    session.receive_data(frame(0, 3, body, correlation_id=1))
    [(_, answer)] = responses(session)
    [topic_answer] = wire.decode_response(0, 3, answer).responses
    errors = [part.error_code for part in topic_answer.partition_responses]
    assert errors == [ErrorCode(10), ErrorCode(10)]  # MESSAGE_TOO_LARGE
    assert walked == []
    assert session.ns.topics.partition_count("t") == 0  # not even auto-created


def test_a_produce_requests_batches_share_one_inflation_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each compressed batch may inflate to 16 MiB, but a request may hold
    thousands: a 64 KB request of 100 zstd batches of 637 bytes, each
    inflating past 16 MiB, held every client up for 5 s (100,000 of them,
    the entry bound, would for over an hour). What the request's batches
    inflate is counted against one budget; past it, a compressed batch is
    MESSAGE_TOO_LARGE without being inflated."""
    inflated: list[int] = []
    inflate = compression.inflate

    def spy(codec: int, data: bytes, limit: int) -> bytes:
        inflated.append(limit)
        return inflate(codec, data, limit)

    monkeypatch.setattr(compression, "inflate", spy)
    monkeypatch.setattr(produce_module, "MAX_REQUEST_INFLATED_BYTES", 1000, raising=False)
    session = open_session()
    plain = kio_batch([(None, b"x" * 500, {})])
    batch = _compressed(plain, 1, gzip.compress(plain[61:]))  # inflates to about 510 bytes
    topic = struct.pack(">h", 1) + b"t"
    body = struct.pack(">hhi", -1, -1, 1000) + struct.pack(">i", 1) + topic + struct.pack(">i", 3)
    body += (struct.pack(">ii", 0, len(batch)) + batch) * 3
    session.receive_data(frame(0, 3, body, correlation_id=1))
    [(_, answer)] = responses(session)
    [topic_answer] = wire.decode_response(0, 3, answer).responses
    errors = [part.error_code for part in topic_answer.partition_responses]
    assert errors == [ErrorCode(0), ErrorCode(10), ErrorCode(10)]  # MESSAGE_TOO_LARGE
    assert len(inflated) == 2  # the third was refused uninflated
    assert inflated[1] < 500


def test_a_produced_batch_is_fetched_as_it_was_sent_beside_native_records() -> None:
    session = open_session()
    sent = kio_batch([(b"k", b"one", {"trace": b"\xff"}), (None, b"two", {})])
    _produce_v3(session, sent, 1)
    session.data_to_send()
    session.broker.namespace("t").logs.append("t-0", [b"native"], 0.0)
    _produce_v3(session, sent, 2)
    session.data_to_send()
    stored = struct.pack(">q", 0) + sent[8:12] + struct.pack(">i", 0) + sent[16:]
    # The native record's time is the log's, which never goes back: the batch's newest.
    native = encode_batch([LogRecord(2, EPOCH_MS, None, None, b"native")])
    again = struct.pack(">q", 3) + stored[8:]
    assert _fetched_records(session, 0, 3) == stored + native + again
    # From inside a batch: the batch whole (clients skip the records before their offset).
    assert _fetched_records(session, 1, 4) == stored + native + again
    assert _fetched_records(session, 4, 5) == again


def test_delete_records_answers_kafkas_codes_per_partition() -> None:
    """-1 is the high watermark; past it, negative or unknown partitions get
    Kafka's codes with low watermark -1, and the others are still done."""
    session, _ = prepared_session(21)  # topic t: two records

    def delete(*parts: tuple[int, int]) -> list[tuple[int, int, int]]:
        partition_cls = request_class(21, 1, "DeleteRecordsPartition")
        topic = request_class(21, 1, "DeleteRecordsTopic")(
            name="t",
            partitions=tuple(partition_cls(partition_index=p, offset=o) for p, o in parts),
        )
        response = call(session, 21, 1, topics=(topic,), timeout=ONE_SECOND)
        return [
            (p.partition_index, int(p.error_code), p.low_watermark)
            for p in response.topics[0].partitions
        ]

    assert delete((0, 3), (0, -2), (7, 0), (0, 1)) == [
        (0, 1, -1),
        (0, 1, -1),
        (7, 3, -1),
        (0, 0, 1),
    ]
    assert delete((0, -1)) == [(0, 0, 2)]
    assert session.ns.core.logs.statistics("t-0").first_offset == 2


@pytest.mark.parametrize("version", range(4, 12))
def test_a_fetch_answer_split_from_its_records_is_the_same_bytes(version: int) -> None:
    """The records of a one-partition Fetch answer are kept out of kio's writer
    (wire.encode_response_split); head and records must be the answer's bytes."""
    session, member = prepared_session(1)
    response = call(session, 1, version, **_request(1, version, member))
    head, parts = wire.encode_response_split(response)
    assert parts and b"".join(parts) == response.responses[0].partitions[0].records
    assert head + b"".join(parts) == wire.encode_response(response)
    # Records read as several buffers are sent as they are, not joined.
    records = response.responses[0].partitions[0].records
    split = wire.RecordParts((records[:7], records[7:]))
    unjoined = _with_records(response, [split])
    head, parts = wire.encode_response_split(unjoined)
    assert parts == split
    assert head + b"".join(parts) == wire.encode_response(response)
    no_records = wire.build(
        type(response),
        throttle_time=ONE_SECOND,
        error_code=ErrorCode.none,
        session_id=0,
        responses=(),
    )
    assert wire.encode_response_split(no_records) == (wire.encode_response(no_records), ())


def _with_records(response: Any, records: list[Any]) -> Any:
    """``response`` (a Fetch answer of one partition) with a partition per entry of ``records``."""
    topic = response.responses[0]
    part = topic.partitions[0]
    partitions = tuple(
        replace(part, partition_index=index, records=value) for index, value in enumerate(records)
    )
    return replace(response, responses=(replace(topic, partitions=partitions),))


@pytest.mark.parametrize("version", range(4, 12))
def test_a_fetch_answer_of_several_partitions_joins_their_record_parts(version: int) -> None:
    """Only a one-partition answer sends its records unjoined; any other (an
    authorization patch can add partitions) is encoded with every part joined."""
    session, member = prepared_session(1)
    response = call(session, 1, version, **_request(1, version, member))
    records = response.responses[0].partitions[0].records
    parts = [wire.RecordParts((records[:5], records[5:])), wire.RecordParts((records,))]
    body, tail = wire.encode_response_split(_with_records(response, parts))
    assert tail == ()
    assert body == wire.encode_response(_with_records(response, [records, records]))


def _join_group_v1(member_id: str) -> bytes:
    join = request_class(11, 1, "JoinGroupRequestProtocol")
    return encode_request(
        11,
        1,
        group_id="g",
        session_timeout=timedelta(seconds=10),
        rebalance_timeout=timedelta(seconds=10),
        member_id=member_id,
        protocol_type="consumer",
        protocols=(wire.build(join, name="range", metadata=b"m"),),
    )


def test_a_consumer_closed_while_its_first_join_waits_leaves_the_group() -> None:
    """It never learnt its member id (the round's answer carries it), so it
    sent no LeaveGroup: the next round waited for it and handed it
    partitions, and the group waited out its session."""
    first = open_session()
    first.receive_data(frame(11, 1, _join_group_v1(""), correlation_id=1))
    [(_, body)] = responses(first)
    leader = wire.decode_response(11, 1, body).member_id
    second = first.service.make_session(first.broker, 2, "test")
    second.receive_data(frame(11, 1, _join_group_v1(""), correlation_id=1))
    assert responses(second) == []  # parked: the round waits for the leader
    second.connection_lost()
    first.receive_data(frame(11, 1, _join_group_v1(leader), correlation_id=2))
    [(_, body)] = responses(first)
    answer = wire.decode_response(11, 1, body)
    assert (answer.error_code, answer.generation_id) == (ErrorCode(0), 2)
    assert [member.member_id for member in answer.members] == [leader]
