"""minibroker's AMQP 0-9-1 port, driven by exactly the pika and aio-pika roles of RabbitMQ.

``minibroker serve --amqp-port`` is started as the minibroker target starts
its server; the workloads then run the RabbitMQ target's own role functions
against that port (W1 queue, W2 fan-out through a topic exchange, W4 RPC by
direct reply-to), so the same client code, configured the same way, is
measured against both brokers in one run.
"""

from __future__ import annotations

from typing import Any

from benchmarks.targets.base import dist_version, free_port
from benchmarks.targets.minibroker import MinibrokerTarget
from benchmarks.targets.rabbitmq import RabbitMQTarget
from benchmarks.workloads import Impl

#: The workloads that have an AMQP equivalent (W3 needs RabbitMQ streams, W5 is the server's).
WORKLOADS = ("w1", "w2", "w4")


class MinibrokerAmqpTarget(RabbitMQTarget):
    name = "minibroker-amqp"
    title = "minibroker (AMQP)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server = MinibrokerTarget(*args, **kwargs)
        self.server.name = self.name

    def setup(self) -> str | None:
        try:
            import pika  # noqa: F401
        except ImportError as exc:
            return f"pika is not installed ({exc}); pip install pika aio-pika"
        self.port = self.server.amqp_port = free_port()
        return self.server.setup()

    def teardown(self) -> None:
        self.server.teardown()

    def server_pid(self) -> int | None:
        return self.server.server_pid()

    def cpu_pid(self) -> int | None:
        return self.server.server_pid()

    def versions(self) -> dict[str, str]:
        return {
            **self.server.versions(),
            "pika": dist_version("pika"),
            "aio-pika": dist_version("aio-pika"),
        }

    def notes(self) -> list[str]:
        return [
            "minibroker's AMQP 0-9-1 port (`serve --amqp-port`, memory storage), driven by the "
            "RabbitMQ target's own pika and aio-pika code with the same settings (see the "
            "RabbitMQ notes): only the port differs.",
        ]

    def impls(self, workload: str) -> list[Impl]:
        return super().impls(workload) if workload in WORKLOADS else []
