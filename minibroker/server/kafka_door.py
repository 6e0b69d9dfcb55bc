"""Serve the Kafka front end (minibroker/kafka/) on a port of its own.

Imported only when a Kafka port is configured, so kio (the ``kafka`` extra)
is needed only by brokers that speak Kafka.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from minibroker.kafka.service import KafkaService, KafkaSettings
from minibroker.server.wire_session import FrontEnd

if TYPE_CHECKING:
    from minibroker.server.app import BrokerServer

#: The front end's name in ``BrokerServer.front_end_ports``.
KAFKA: Final = "kafka"


def add_kafka_front_end(server: BrokerServer, port: int, settings: KafkaSettings) -> KafkaService:
    """Make ``server`` listen for Kafka clients on ``port`` (0: any free port)."""
    service = KafkaService(
        server.broker, settings, lambda: server.front_end_ports[KAFKA], server.auth
    )
    server.front_ends.append(FrontEnd(KAFKA, server.config.host, port, service.make_session))
    return service


def kafka_bootstrap(server: BrokerServer) -> str:
    """``host:port`` for a Kafka client's ``bootstrap.servers``, once listening."""
    if server.kafka is None:
        raise RuntimeError("this broker has no Kafka port (start it with kafka=True)")
    return f"{server.kafka.settings.advertised_host}:{server.kafka.port}"
