"""Targets: one module per broker, each naming the role functions that drive it.

``make_target(name, ...)`` returns the :class:`~benchmarks.targets.base.Target`
for a name of :data:`benchmarks.config.ALL_TARGETS`.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.config import RunConfig
from benchmarks.targets.base import Target


def make_target(name: str, cfg: RunConfig, log_dir: Path) -> Target:
    if name in ("minibroker", "minibroker-durable", "minibroker-busy-poll"):
        from benchmarks.targets.minibroker import BUSY_POLL_US, MinibrokerTarget

        return MinibrokerTarget(
            cfg,
            log_dir,
            durable=name == "minibroker-durable",
            busy_poll_us=BUSY_POLL_US if name == "minibroker-busy-poll" else 0,
        )
    if name == "minibroker-kafka":
        from benchmarks.targets.minibroker_kafka import MinibrokerKafkaTarget

        return MinibrokerKafkaTarget(cfg, log_dir)
    if name == "minibroker-amqp":
        from benchmarks.targets.minibroker_amqp import MinibrokerAmqpTarget

        return MinibrokerAmqpTarget(cfg, log_dir)
    if name == "rabbitmq":
        from benchmarks.targets.rabbitmq import RabbitMQTarget

        return RabbitMQTarget(cfg, log_dir)
    if name == "kafka":
        from benchmarks.targets.kafka import KafkaTarget

        return KafkaTarget(cfg, log_dir)
    if name == "nats":
        from benchmarks.targets.nats import NatsTarget

        return NatsTarget(cfg, log_dir)
    raise ValueError(f"unknown target {name!r}")
