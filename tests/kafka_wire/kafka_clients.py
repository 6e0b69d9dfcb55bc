"""The same few operations through each of the three Python Kafka clients.

Each adapter does one thing per call with the client's own API, as an
application would, so the test matrix runs every scenario through
confluent-kafka (librdkafka), aiokafka and kafka-python unchanged. Timeouts are
short so a rebalance is noticed in a fraction of a second; waits are bounded
by deadlines that only fail a test, never pace it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from minibroker.testing import KafkaBootstrap

DEADLINE = 30.0
#: Quick group timeouts: members notice a rebalance at their next heartbeat.
SESSION_MS = 6000
HEARTBEAT_MS = 100
#: A static member's session: long, as static membership is for riding out restarts.
STATIC_SESSION_MS = 30_000


class KafkaClient(Protocol):
    name: str

    def produce(
        self, kafka: KafkaBootstrap, topic: str, values: list[bytes], **opts: Any
    ) -> None: ...

    def consume(
        self, kafka: KafkaBootstrap, topic: str, group: str, count: int, manual: bool
    ) -> list[bytes]: ...

    def offset_for_time_then_read(
        self, kafka: KafkaBootstrap, topic: str, timestamp_ms: int, count: int
    ) -> tuple[int, list[bytes]]: ...

    def create_topic(self, kafka: KafkaBootstrap, topic: str, partitions: int) -> None: ...


def _collect(poll: Callable[[], list[bytes]], count: int) -> list[bytes]:
    """Call ``poll`` (which blocks in the client up to its own timeout) until
    ``count`` values have come; the deadline only fails a broken test."""
    got: list[bytes] = []
    deadline = time.monotonic() + DEADLINE
    while len(got) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {count} records, got {len(got)}")
        got.extend(poll())
    return got


# ---------------------------------------------------------------- confluent


class Confluent:
    name = "confluent-kafka"

    def produce(self, kafka: KafkaBootstrap, topic: str, values: list[bytes], **opts: Any) -> None:
        from confluent_kafka import Producer

        config = kafka.confluent(**{"linger.ms": 5})
        if opts.get("idempotent"):
            config["enable.idempotence"] = True
        if opts.get("compression"):
            config["compression.type"] = opts["compression"]
        errors: list[Any] = []
        producer = Producer(config)
        stamps = opts.get("timestamps", [0] * len(values))  # 0: the client's clock
        for index, value in enumerate(values):
            producer.produce(
                topic,
                value,
                key=opts.get("keys", [None] * len(values))[index],
                timestamp=stamps[index],
                on_delivery=lambda err, _msg: err and errors.append(err),
            )
        assert producer.flush(DEADLINE) == 0
        assert errors == []

    def consumer(self, kafka: KafkaBootstrap, group: str | None, **extra: Any) -> Any:
        from confluent_kafka import Consumer

        config = kafka.confluent(
            **{
                "group.id": group or "unused",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": SESSION_MS,
                "heartbeat.interval.ms": HEARTBEAT_MS,
                **extra,
            }
        )
        return Consumer(config)

    @staticmethod
    def _poll(consumer: Any, count: int) -> list[bytes]:
        def values() -> list[bytes]:
            message = consumer.poll(0.1)
            return [message.value()] if message is not None and message.error() is None else []

        return _collect(values, count)

    def consume(
        self, kafka: KafkaBootstrap, topic: str, group: str, count: int, manual: bool
    ) -> list[bytes]:
        consumer = self.consumer(kafka, group, **{"enable.auto.commit": not manual})
        consumer.subscribe([topic])
        got = self._poll(consumer, count)
        if manual:
            consumer.commit(asynchronous=False)
        consumer.close()
        return got

    def offset_for_time_then_read(
        self, kafka: KafkaBootstrap, topic: str, timestamp_ms: int, count: int
    ) -> tuple[int, list[bytes]]:
        from confluent_kafka import TopicPartition

        consumer = self.consumer(kafka, None, **{"enable.auto.commit": False})
        [found] = consumer.offsets_for_times([TopicPartition(topic, 0, timestamp_ms)], 10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        consumer.seek(TopicPartition(topic, 0, found.offset))
        got = self._poll(consumer, count)
        consumer.close()
        return found.offset, got

    def create_topic(self, kafka: KafkaBootstrap, topic: str, partitions: int) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(kafka.confluent())
        futures = admin.create_topics([NewTopic(topic, partitions, 1)])
        futures[topic].result(DEADLINE)


# ------------------------------------------------------------------ aiokafka


async def _drain(consumer: Any, count: int) -> list[bytes]:
    """Values from an aiokafka consumer until ``count`` have come."""
    got: list[bytes] = []
    async with asyncio.timeout(DEADLINE):
        while len(got) < count:
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                got.extend(message.value for message in batch)
    return got


class AioKafka:
    name = "aiokafka"

    def produce(self, kafka: KafkaBootstrap, topic: str, values: list[bytes], **opts: Any) -> None:
        from aiokafka import AIOKafkaProducer

        async def run() -> None:
            producer = AIOKafkaProducer(
                **kafka.kwargs(
                    enable_idempotence=bool(opts.get("idempotent")),
                    compression_type=opts.get("compression"),
                    linger_ms=5,
                )
            )
            await producer.start()
            try:
                keys = opts.get("keys", [None] * len(values))
                stamps = opts.get("timestamps", [None] * len(values))
                sent = [
                    await producer.send(topic, v, key=k, timestamp_ms=t)
                    for v, k, t in zip(values, keys, stamps, strict=True)
                ]
                await asyncio.gather(*sent)
            finally:
                await producer.stop()

        asyncio.run(run())

    def consume(
        self, kafka: KafkaBootstrap, topic: str, group: str, count: int, manual: bool
    ) -> list[bytes]:
        from aiokafka import AIOKafkaConsumer

        async def run() -> list[bytes]:
            consumer = AIOKafkaConsumer(
                topic,
                **kafka.kwargs(
                    group_id=group,
                    auto_offset_reset="earliest",
                    enable_auto_commit=not manual,
                    session_timeout_ms=SESSION_MS,
                    heartbeat_interval_ms=HEARTBEAT_MS,
                ),
            )
            await consumer.start()
            try:
                got = await _drain(consumer, count)
                if manual:
                    await consumer.commit()
            finally:
                await consumer.stop()
            return got

        return asyncio.run(run())

    def offset_for_time_then_read(
        self, kafka: KafkaBootstrap, topic: str, timestamp_ms: int, count: int
    ) -> tuple[int, list[bytes]]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        async def run() -> tuple[int, list[bytes]]:
            consumer = AIOKafkaConsumer(**kafka.kwargs(enable_auto_commit=False))
            await consumer.start()
            try:
                partition = TopicPartition(topic, 0)
                found = (await consumer.offsets_for_times({partition: timestamp_ms}))[partition]
                consumer.assign([partition])
                consumer.seek(partition, found.offset)
                return found.offset, await _drain(consumer, count)
            finally:
                await consumer.stop()

        return asyncio.run(run())

    def create_topic(self, kafka: KafkaBootstrap, topic: str, partitions: int) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        async def run() -> None:
            admin = AIOKafkaAdminClient(**kafka.kwargs())
            await admin.start()
            try:
                await admin.create_topics([NewTopic(topic, partitions, 1)])
            finally:
                await admin.close()

        asyncio.run(run())


# -------------------------------------------------------------- kafka-python


class KafkaPython:
    name = "kafka-python"

    def produce(self, kafka: KafkaBootstrap, topic: str, values: list[bytes], **opts: Any) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(
            **kafka.kwargs(
                enable_idempotence=bool(opts.get("idempotent")),
                compression_type=opts.get("compression"),
                linger_ms=5,
            )
        )
        keys = opts.get("keys", [None] * len(values))
        stamps = opts.get("timestamps", [None] * len(values))
        futures = [
            producer.send(topic, v, key=k, timestamp_ms=t)
            for v, k, t in zip(values, keys, stamps, strict=True)
        ]
        producer.flush(DEADLINE)
        for future in futures:
            future.get(DEADLINE)
        producer.close()

    def consumer(
        self, kafka: KafkaBootstrap, *topics: str, listener: Any = None, **extra: Any
    ) -> Any:
        from kafka import KafkaConsumer

        defaults = {
            "auto_offset_reset": "earliest",
            "session_timeout_ms": SESSION_MS,
            "heartbeat_interval_ms": HEARTBEAT_MS,
        }
        consumer = KafkaConsumer(**kafka.kwargs(**{**defaults, **extra}))
        if topics:
            consumer.subscribe(list(topics), listener=listener)
            # Have the subscribed topics' metadata before the first poll joins
            # the group (docs/kafka.md, "kafka-python 3"): else kafka-python
            # 3.0 may join with no metadata, rejoin at once when it arrives,
            # and, if a poll() times out during that second join, never finish
            # it (the consumer stays "rebalancing": commits fail, heartbeats stop).
            consumer.topics()
        return consumer

    def _poll(self, consumer: Any, count: int) -> list[bytes]:
        def values() -> list[bytes]:
            batches = consumer.poll(timeout_ms=100).values()
            return [message.value for batch in batches for message in batch]

        return _collect(values, count)

    def consume(
        self, kafka: KafkaBootstrap, topic: str, group: str, count: int, manual: bool
    ) -> list[bytes]:
        consumer = self.consumer(kafka, topic, group_id=group, enable_auto_commit=not manual)
        got = self._poll(consumer, count)
        if manual:
            consumer.commit()
        consumer.close()
        return got

    def offset_for_time_then_read(
        self, kafka: KafkaBootstrap, topic: str, timestamp_ms: int, count: int
    ) -> tuple[int, list[bytes]]:
        from kafka import TopicPartition

        consumer = self.consumer(kafka, enable_auto_commit=False)
        partition = TopicPartition(topic, 0)
        found = consumer.offsets_for_times({partition: timestamp_ms})[partition]
        consumer.assign([partition])
        consumer.seek(partition, found.offset)
        got = self._poll(consumer, count)
        consumer.close()
        return found.offset, got

    def create_topic(self, kafka: KafkaBootstrap, topic: str, partitions: int) -> None:
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(**kafka.kwargs())
        admin.create_topics([NewTopic(topic, partitions, 1)])
        admin.close()


CLIENTS: list[KafkaClient] = [Confluent(), AioKafka(), KafkaPython()]


# ------------------------------------------------------- group members in threads


class Member:
    """One group member polling in a thread of its own until stopped.

    ``assignment`` is the partitions it holds now; ``seen`` what it consumed
    (it commits synchronously after every poll that brought records, so a
    rebalance hands partitions over at the committed offset); ``revocations``
    how many times the group took partitions back from it (each rebalance
    round it held partitions in, with the eager protocol).
    """

    def __init__(
        self,
        client: str,
        kafka: KafkaBootstrap,
        topic: str,
        group: str,
        assignor: str | None,
        instance: str | None = None,
    ):
        """``instance``: a static member's ``group.instance.id`` (with the longer
        session a static member is given, :data:`STATIC_SESSION_MS`)."""
        self.assignment: frozenset[int] = frozenset()
        self.revocations = 0
        self._instance = instance
        self.seen: list[bytes] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        run = {
            "confluent-kafka": self._confluent,
            "aiokafka": self._aiokafka,
            "kafka-python": self._kafka_python,
        }[client]
        self._thread = threading.Thread(
            target=self._guard, args=(run, kafka, topic, group, assignor), daemon=True
        )
        self._thread.start()

    def _static_kwargs(self) -> dict[str, Any]:
        """aiokafka's and kafka-python's settings of a static member."""
        if not self._instance:
            return {}
        return {"group_instance_id": self._instance, "session_timeout_ms": STATIC_SESSION_MS}

    def _revoked(self, partitions: Any) -> None:
        if partitions:
            self.revocations += 1

    def _guard(self, run: Any, *args: Any) -> None:
        try:
            run(*args)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(DEADLINE)
        if self.error is not None:
            raise self.error

    def _confluent(
        self, kafka: KafkaBootstrap, topic: str, group: str, assignor: str | None
    ) -> None:
        extra: dict[str, Any] = {"enable.auto.commit": False}
        if assignor:
            extra["partition.assignment.strategy"] = assignor
        if self._instance:
            extra["group.instance.id"] = self._instance
            extra["session.timeout.ms"] = STATIC_SESSION_MS
        consumer = Confluent().consumer(kafka, group, **extra)
        consumer.subscribe([topic], on_revoke=lambda _consumer, parts: self._revoked(parts))
        while not self._stop.is_set():
            message = consumer.poll(0.05)
            if message is not None and message.error() is None:
                self.seen.append(message.value())
                consumer.commit(message, asynchronous=False)
            self.assignment = frozenset(tp.partition for tp in consumer.assignment())
            _notify()
        consumer.close()

    def _kafka_python(
        self, kafka: KafkaBootstrap, topic: str, group: str, assignor: str | None
    ) -> None:
        from kafka import ConsumerRebalanceListener

        member = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                member._revoked(revoked)

            def on_partitions_assigned(self, assigned: Any) -> None:
                pass

        consumer = KafkaPython().consumer(
            kafka,
            topic,
            listener=Listener(),
            group_id=group,
            enable_auto_commit=False,
            **self._static_kwargs(),
        )
        while not self._stop.is_set():
            batches = consumer.poll(timeout_ms=50)
            for batch in batches.values():
                self.seen.extend(message.value for message in batch)
            if batches:
                consumer.commit()
            self.assignment = frozenset(tp.partition for tp in consumer.assignment())
            _notify()
        consumer.close()

    def _aiokafka(
        self, kafka: KafkaBootstrap, topic: str, group: str, assignor: str | None
    ) -> None:
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

        member = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                member._revoked(revoked)

            def on_partitions_assigned(self, assigned: Any) -> None:
                pass

        async def run() -> None:
            consumer = AIOKafkaConsumer(
                **kafka.kwargs(
                    group_id=group,
                    auto_offset_reset="earliest",
                    enable_auto_commit=False,
                    **{
                        "session_timeout_ms": SESSION_MS,
                        "heartbeat_interval_ms": HEARTBEAT_MS,
                        **self._static_kwargs(),
                    },
                ),
            )
            consumer.subscribe([topic], listener=Listener())
            await consumer.start()
            try:
                while not self._stop.is_set():
                    batches = await consumer.getmany(timeout_ms=50)
                    for batch in batches.values():
                        self.seen.extend(message.value for message in batch)
                    if batches:
                        await consumer.commit()
                    self.assignment = frozenset(tp.partition for tp in consumer.assignment())
                    _notify()
            finally:
                await consumer.stop()

        asyncio.run(run())


#: Notified by every member after each poll: what ``wait_for`` checks may have changed.
_changed = threading.Condition()


def _notify() -> None:
    with _changed:
        _changed.notify_all()


def wait_for(condition: Any, what: str) -> None:
    """Block until ``condition`` holds (the members work in their own threads)."""
    with _changed:
        if not _changed.wait_for(condition, DEADLINE):
            raise AssertionError(f"timed out waiting for {what}")
