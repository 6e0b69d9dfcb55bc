"""A full data directory through the Kafka protocol: the codes Kafka itself gives.

The disk is filled through the storage layer's seam (``fileio.pwrite`` fails
with ENOSPC). Kafka answers a log it cannot write with KAFKA_STORAGE_ERROR
(56, retriable), and its group coordinator turns that into NOT_COORDINATOR
(16) for an offset commit, so the client finds the coordinator again and
retries; both used to be codes that told the client its request was wrong
(INVALID_CONFIG, UNKNOWN_SERVER_ERROR), which clients do not retry.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from kafka_wire.wire_helpers import (
    ONE_SECOND,
    call,
    encode_request,
    frame,
    open_session,
    request_class,
    responses,
)
from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig
from minibroker.kafka import wire
from minibroker.kafka.session import KafkaSession
from minibroker.server.datadir import DataDirectory
from minibroker.storage import MemoryLog, fileio

KAFKA_STORAGE_ERROR = ErrorCode(56)
NOT_COORDINATOR = ErrorCode(16)
NONE = ErrorCode(0)


class Disk:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        real = fileio.pwrite

        def pwrite(fd: int, data: bytes | memoryview, position: int) -> int:
            if self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, data, position)

        monkeypatch.setattr(fileio, "pwrite", pwrite)


def create_topic(session: KafkaSession, name: str) -> Any:
    """CreateTopics v4: the one result."""

    def nested(entity: str, **values: Any) -> Any:
        return wire.build(request_class(19, 4, entity), **values)

    topic = nested(
        "CreatableTopic",
        name=name,
        num_partitions=1,
        replication_factor=1,
        assignments=(),
        configs=(),
    )
    [result] = call(session, 19, 4, topics=(topic,), timeout=ONE_SECOND, validate_only=False).topics
    return result


def commit_offset(session: KafkaSession, topic: str, offset: int) -> ErrorCode:
    """OffsetCommit v7 outside any group generation: the partition's error code."""

    def nested(entity: str, **values: Any) -> Any:
        return wire.build(request_class(8, 7, entity), **values)

    partition = nested(
        "OffsetCommitRequestPartition",
        partition_index=0,
        committed_offset=offset,
        committed_leader_epoch=-1,
        committed_metadata="",
    )
    answer = call(
        session,
        8,
        7,
        group_id="g",
        generation_id_or_member_epoch=-1,
        member_id="",
        group_instance_id=None,
        topics=(nested("OffsetCommitRequestTopic", name=topic, partitions=(partition,)),),
    )
    [[result]] = [t.partitions for t in answer.topics]
    return result.error_code  # type: ignore[no-any-return]


def test_topic_creation_and_offset_commits_on_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(monkeypatch)
    broker = Broker(
        CoreConfig(fsync="always"), storage=DataDirectory(tmp_path), memory_log=MemoryLog
    )
    try:
        session = open_session(broker)
        assert create_topic(session, "t").error_code == NONE
        disk.full = True
        refused = create_topic(session, "u")
        assert refused.error_code == KAFKA_STORAGE_ERROR
        assert "disk full" in refused.error_message
        assert commit_offset(session, "t", 0) == NOT_COORDINATOR
        assert session.closing is None  # the connection carries on
        disk.full = False
        assert create_topic(session, "u").error_code == NONE
        assert commit_offset(session, "t", 0) == NONE
    finally:
        broker.close()


def test_a_produce_whose_fsync_fails_is_never_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """acks=-1 under group commit: the answer waits for the fsync. When it
    fails the connection is closed without an answer (the client retries);
    the retry finds the log refusing writes (KAFKA_STORAGE_ERROR) although
    the disk works again: the old broker retried the fsync at the next round
    and acknowledged the retry."""
    from kafka_wire.test_session import _request
    from minibroker.kafka.groups import JoinResult

    failing = [False]
    real = fileio.datasync

    def datasync(fd: int) -> None:
        if failing[0]:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(fileio, "datasync", datasync)
    broker = Broker(storage=DataDirectory(tmp_path), memory_log=MemoryLog)
    try:
        produce = _request(0, 7, JoinResult(0))
        first = open_session(broker)
        first.receive_data(frame(0, 7, encode_request(0, 7, **produce), 1))
        broker.durability.sync()
        assert [cid for cid, _ in responses(first)] == [1]
        second = open_session(broker)
        second.receive_data(frame(0, 7, encode_request(0, 7, **produce), 2))
        failing[0] = True
        broker.durability.sync()
        assert responses(second) == []
        assert second.closing is not None and "an fsync of" in second.closing.message
        failing[0] = False
        third = open_session(broker)
        answer = call(third, 0, 7, correlation_id=3, **produce)
        [[partition]] = [t.partition_responses for t in answer.responses]
        assert partition.error_code == KAFKA_STORAGE_ERROR
        assert broker.namespace("t").logs.get("t-0").high_watermark == 1
    finally:
        broker.close()
