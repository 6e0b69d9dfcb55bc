"""A commit's metadata string is bounded, as Kafka's ``offset.metadata.max.bytes``."""

from __future__ import annotations

from datetime import timedelta

from minibroker.kafka import wire
from minibroker.kafka.session import KafkaSession

from .wire_helpers import call, open_session, request_class


def _commit(session: KafkaSession, offset: int, metadata: str) -> int:
    partition = wire.build(
        request_class(8, 7, "OffsetCommitRequestPartition"),
        partition_index=0,
        committed_offset=offset,
        committed_leader_epoch=-1,
        committed_metadata=metadata,
    )
    topic = wire.build(
        request_class(8, 7, "OffsetCommitRequestTopic"), name="t", partitions=(partition,)
    )
    response = call(
        session,
        8,
        7,
        group_id="g",
        generation_id_or_member_epoch=-1,
        member_id="",
        group_instance_id=None,
        retention_time=timedelta(milliseconds=-1),
        topics=(topic,),
    )
    return int(response.topics[0].partitions[0].error_code)


def test_a_commit_with_more_than_4096_bytes_of_metadata_is_refused() -> None:
    """30,000 bytes of metadata were kept in memory for every group and
    partition a client committed to; Kafka answers OFFSET_METADATA_TOO_LARGE
    (12) and does not commit the offset."""
    session = open_session()
    call(session, 3, 0, topics=(wire.build(request_class(3, 0, "MetadataRequestTopic"), name="t"),))
    session.broker.namespace("t").logs.append("t-0", [b"a", b"b"], 0.0)
    assert _commit(session, 1, "m" * 4096) == 0
    assert _commit(session, 2, "é" * 2049) == 12  # 4098 bytes of UTF-8
    assert _commit(session, 2, "m" * 30_000) == 12
    assert session.ns.core.logs.statistics("t-0").groups["g"].committed == 1
    assert session.ns.commit_metadata[("g", "t-0")] == "m" * 4096
