"""Serve the SQS endpoint (minibroker/sqs/) on a port of its own, as a front end.

Like the AMQP and Kafka ports, the SQS port is a ``FrontEnd``: the server
accepts its connections (with TLS when the server has a certificate, and
within ``--max-connections``), and runs each through ``Connection`` with an
``SqsSession``, the sans-I/O HTTP/1.1 and SQS state of one client
(minibroker/sqs/session.py). So SQS requests get the native port's chunked
reads, coalesced and direct writes, backpressure, group commit (an answer
to a durable write waits for the fsync, as a publisher confirm does) and
graceful shutdown, and cost no ASGI machinery.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import trio

from minibroker.core.broker import Broker
from minibroker.server.wire_session import FrontEnd
from minibroker.sqs.session import SqsEndpoint, SqsSession

if TYPE_CHECKING:
    from minibroker.server.app import BrokerServer

log = logging.getLogger("minibroker.sqs")

#: The front end's name in ``BrokerServer.front_end_ports``.
SQS: Final = "sqs"


def add_sqs_front_end(server: BrokerServer, port: int) -> SqsEndpoint:
    """Make ``server`` listen for SQS clients on ``port`` (0: any free port)."""
    config = server.config
    endpoint = SqsEndpoint(
        server.broker,
        next(server._conn_ids),  # the endpoint is one peer of the core, like a connection
        budget=server.input_budget,
        scheme="https" if config.tls_cert else "http",
        keys=config.sqs_keys,
    )

    def make_session(broker: Broker, conn_id: int, peer_name: str) -> SqsSession:
        return endpoint.session(conn_id, peer_name, trio.current_time())

    server.front_ends.append(FrontEnd(SQS, config.host, port, make_session))
    return endpoint


def sqs_listening(server: BrokerServer, endpoint: SqsEndpoint) -> int:
    """The port the endpoint bound, once listening; logs its URL."""
    port = server.front_end_ports[SQS]
    host = server.config.host
    endpoint.default_host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    log.info("SQS endpoint on %s://%s", endpoint.scheme, endpoint.default_host)
    return port
