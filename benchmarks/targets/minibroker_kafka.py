"""minibroker's Kafka port through confluent-kafka: the same roles as the tansu target.

``minibroker serve --kafka-port`` on free ports, in-memory storage (as tansu
runs), driven by exactly the role functions of benchmarks/targets/kafka.py,
so W1 and W3 compare the two Kafka-protocol brokers with the same client code.
"""

from __future__ import annotations

from typing import Any

from benchmarks.config import HOST
from benchmarks.targets.base import free_port
from benchmarks.targets.kafka import confluent_impls
from benchmarks.targets.minibroker import MinibrokerTarget
from benchmarks.workloads import Impl


class MinibrokerKafkaTarget(MinibrokerTarget):
    title = "minibroker (Kafka protocol)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = "minibroker-kafka"
        self.kafka_port = 0

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.kafka_port}"

    def setup(self) -> str | None:
        self.kafka_port = free_port()
        self.extra_args = ["--kafka-port", str(self.kafka_port)]
        return super().setup()

    def versions(self) -> dict[str, str]:
        import confluent_kafka

        return {
            **super().versions(),
            "confluent-kafka": confluent_kafka.version()[0],
            "librdkafka": confluent_kafka.libversion()[0],
        }

    def notes(self) -> list[str]:
        return [
            "`minibroker serve --kafka-port` on free ports, in-memory storage; driven by the "
            "same confluent-kafka role functions and settings as the tansu target (kafka)."
        ]

    def impls(self, workload: str) -> list[Impl]:
        return confluent_impls(workload, self.bootstrap)
