"""A Kafka responder that costs next to nothing per record: the client's ceiling.

It answers just what the harness's confluent-kafka producer and consumer ask
for (ApiVersions, Metadata, CreateTopics, ListOffsets, FindCoordinator,
Produce, Fetch) on one partition per topic, and does no per-record work at
all: a produced batch is kept as it came, its base offset written in, and
its record count read from the batch header (nothing is checked); a Fetch
sends the kept batches back from the one holding the fetch offset, handed
to the kernel as they are (``sendmsg``: no joining, no copy in Python). Its
cost is per request, and the harness's requests carry thousands of records,
so its CPU per record is a small fraction of a real broker's.

``benchmarks/kafka_phases.py`` runs it beside minibroker and Tansu: the rate
a confluent-kafka client reaches against it is the most any broker could
give that client, so the ratio of that rate to Tansu's in the same run is the
best ratio any broker could show against Tansu through this client. Run
alone::

    python -m benchmarks.kafka_null_broker --port 19999

Request bodies are decoded and answers encoded with minibroker's Kafka codec
(kio, ``minibroker/kafka/wire.py``); each connection is served by a thread
that answers its requests in order, as Kafka does.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import struct
import threading
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from kio.schema.errors import ErrorCode

from minibroker.kafka import wire
from minibroker.kafka.handlers import unsupported_version
from minibroker.kafka.handlers.admin import api_versions_body

NONE: Final = ErrorCode(0)
UNKNOWN_TOPIC_OR_PARTITION: Final = ErrorCode(3)
OFFSET_OUT_OF_RANGE: Final = ErrorCode(1)
NO_THROTTLE: Final = timedelta(0)
#: Where a batch header keeps its record count (see storage/kafka_batch.py).
_COUNT_AT: Final = 57
_BASE_OFFSET: Final = struct.Struct(">q")
_COUNT: Final = struct.Struct(">i")
#: Buffers handed to one sendmsg (Linux takes up to 1024).
_IOV_MAX: Final = 512
#: A response frame's size and correlation id (response header v0).
_PREFIX: Final = struct.Struct(">ii")
#: What it answers, at the versions minibroker's Kafka port answers them.
SERVED: Final = (0, 1, 2, 3, 10, 18, 19)


@dataclass
class Partition:
    """One partition: the batches as produced, and the base offset of each."""

    batches: list[bytes] = field(default_factory=list)
    bases: list[int] = field(default_factory=list)
    end: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def append(self, batch: bytes) -> int:
        (count,) = _COUNT.unpack_from(batch, _COUNT_AT)
        with self.lock:
            base = self.end
            self.batches.append(_BASE_OFFSET.pack(base) + batch[8:])
            self.bases.append(base)
            self.end = base + count
        return base

    def read(self, offset: int, max_bytes: int) -> list[bytes]:
        """Whole batches from the one holding ``offset``; at least one."""
        with self.lock:
            i = max(bisect_right(self.bases, offset) - 1, 0)
            parts: list[bytes] = []
            size = 0
            for batch in self.batches[i:]:
                if parts and size + len(batch) > max_bytes:
                    break
                parts.append(batch)
                size += len(batch)
        return parts


class NullBroker:
    """The shared state: topics by name, each of one partition."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.topics: dict[str, Partition] = {}
        self._lock = threading.Lock()

    def partition(self, topic: str) -> Partition:
        with self._lock:
            return self.topics.setdefault(topic, Partition())

    def answer(self, api_key: int, version: int, request: Any) -> list[bytes]:
        """The response body, as the buffers to send one after the other."""
        cls = wire.response_class(api_key, version)
        if api_key == 1:
            return self._fetch(cls, request)
        build = {
            0: self._produce,
            2: self._list_offsets,
            3: self._metadata,
            10: self._find_coordinator,
            19: self._create_topics,
        }[api_key]
        return [wire.encode_response(build(cls, request))]

    def _produce(self, cls: type, request: Any) -> Any:
        part_cls = wire.nested(cls, "PartitionProduceResponse")
        topic_cls = wire.nested(cls, "TopicProduceResponse")
        topics = []
        for topic in request.topic_data:
            partition = self.partition(topic.name)
            answers = tuple(
                wire.build(
                    part_cls,
                    index=data.index,
                    error_code=NONE,
                    base_offset=partition.append(data.records),
                    log_append_time=None,
                    log_start_offset=0,
                )
                for data in topic.partition_data
            )
            topics.append(wire.build(topic_cls, name=topic.name, partition_responses=answers))
        return wire.build(cls, responses=tuple(topics), throttle_time=NO_THROTTLE)

    def _fetch(self, cls: type, request: Any) -> list[bytes]:
        """Records are the last field of a Fetch answer (v4-11) when it has one
        partition, as the harness's consumer asks: the body is encoded with empty
        records, and the batches follow it, with the records' length patched in."""
        part_cls = wire.nested(cls, "PartitionData")
        topic_cls = wire.nested(cls, "FetchableTopicResponse")
        topics = []
        batches: list[bytes] = []
        alone = len(request.topics) == 1 and len(request.topics[0].partitions) == 1
        for topic in request.topics:
            partition = self.partition(topic.topic)
            answers = []
            for want in topic.partitions:
                end = partition.end
                error = NONE if 0 <= want.fetch_offset <= end else OFFSET_OUT_OF_RANGE
                records = b""
                if error is NONE and want.fetch_offset < end:
                    batches = partition.read(want.fetch_offset, want.partition_max_bytes)
                    if not alone:
                        records, batches = b"".join(batches), []
                answers.append(
                    wire.build(
                        part_cls,
                        partition_index=want.partition,
                        error_code=error,
                        high_watermark=end,
                        last_stable_offset=end,
                        log_start_offset=0,
                        aborted_transactions=(),
                        preferred_read_replica=-1,
                        records=records,
                    )
                )
            topics.append(wire.build(topic_cls, topic=topic.topic, partitions=tuple(answers)))
        body = wire.encode_response(
            wire.build(
                cls,
                throttle_time=NO_THROTTLE,
                error_code=NONE,
                session_id=0,
                responses=tuple(topics),
            )
        )
        if not batches:
            return [body]
        size = sum(len(batch) for batch in batches)
        return [body[:-4] + _COUNT.pack(size), *batches]

    def _list_offsets(self, cls: type, request: Any) -> Any:
        part_cls = wire.nested(cls, "ListOffsetsPartitionResponse")
        topic_cls = wire.nested(cls, "ListOffsetsTopicResponse")
        topics = []
        for topic in request.topics:
            end = self.partition(topic.name).end
            answers = tuple(
                wire.build(
                    part_cls,
                    partition_index=part.partition_index,
                    error_code=NONE,
                    timestamp=-1,
                    offset=end if part.timestamp == -1 else 0,
                    leader_epoch=0,
                )
                for part in topic.partitions
            )
            topics.append(wire.build(topic_cls, name=topic.name, partitions=answers))
        return wire.build(cls, throttle_time=NO_THROTTLE, topics=tuple(topics))

    def _metadata(self, cls: type, request: Any) -> Any:
        part_cls = wire.nested(cls, "MetadataResponsePartition")
        topic_cls = wire.nested(cls, "MetadataResponseTopic")
        names = list(self.topics) if not request.topics else [t.name for t in request.topics]
        topics = []
        for name in names:
            self.partition(name)
            only = wire.build(
                part_cls,
                error_code=NONE,
                partition_index=0,
                leader_id=0,
                leader_epoch=0,
                replica_nodes=(0,),
                isr_nodes=(0,),
                offline_replicas=(),
            )
            topics.append(
                wire.build(
                    topic_cls, error_code=NONE, name=name, is_internal=False, partitions=(only,)
                )
            )
        broker = wire.build(
            wire.nested(cls, "MetadataResponseBroker"),
            node_id=0,
            host=self.host,
            port=self.port,
            rack=None,
        )
        return wire.build(
            cls,
            throttle_time=NO_THROTTLE,
            brokers=(broker,),
            cluster_id="null",
            controller_id=0,
            topics=tuple(topics),
        )

    def _find_coordinator(self, cls: type, request: Any) -> Any:
        return wire.build(
            cls,
            throttle_time=NO_THROTTLE,
            error_code=NONE,
            error_message=None,
            node_id=0,
            host=self.host,
            port=self.port,
        )

    def _create_topics(self, cls: type, request: Any) -> Any:
        result_cls = wire.nested(cls, "CreatableTopicResult")
        results = []
        for topic in request.topics:
            self.partition(topic.name)
            results.append(
                wire.build(
                    result_cls,
                    name=topic.name,
                    error_code=NONE,
                    error_message=None,
                    num_partitions=1,
                    replication_factor=1,
                    configs=(),
                )
            )
        return wire.build(cls, throttle_time=NO_THROTTLE, topics=tuple(results))

    def serve_connection(self, sock: socket.socket) -> None:
        """Answer ``sock``'s requests in order until the client leaves.

        A client may leave with an answer owed (a consumer closing mid-fetch):
        that ends the connection as a clean close does, not with an exception
        escaping the thread."""
        with sock, contextlib.suppress(ConnectionError):
            self._answer_until_closed(sock)

    def _answer_until_closed(self, sock: socket.socket) -> None:
        buffer = bytearray()
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return
            buffer += data
            for frame in wire.split_frames(buffer, 1 << 30):
                header = wire.parse_header(frame)
                key, version = header.api_key, header.api_version
                low, high = wire.IMPLEMENTED.get(key, (0, -1))
                if key == 18 and version <= 2:
                    parts = [api_versions_body(version, 0)]
                elif key in SERVED and key != 18 and low <= version <= high:
                    request = wire.decode_request(key, version, frame, header.body_offset)
                    parts = self.answer(key, version, request)
                else:
                    parts = [unsupported_version(key)]
                size = sum(len(part) for part in parts)
                _send_all(sock, [_PREFIX.pack(size + 4, header.correlation_id), *parts])

    def serve(self, listener: socket.socket) -> None:
        """Accept connections until ``listener`` is closed."""
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.serve_connection, args=(sock,), daemon=True).start()


def _send_all(sock: socket.socket, parts: list[bytes]) -> None:
    """``sendmsg`` until every byte of ``parts`` is sent (it may send less)."""
    views = [memoryview(part) for part in parts if part]
    while views:
        sent = sock.sendmsg(views[:_IOV_MAX])
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    listener = socket.create_server((args.host, args.port))
    NullBroker(args.host, args.port).serve(listener)


if __name__ == "__main__":
    main()
