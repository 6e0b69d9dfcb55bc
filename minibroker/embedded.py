"""An in-process broker for tests and Trio programs: ``async with open_broker()``.

The broker runs inside the caller's Trio run, stores everything in memory,
and listens on no socket. ``broker.connect()`` returns a client over an
in-memory stream that goes through the very same protocol session as a TCP
client, so what passes here passes against ``minibroker serve``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import trio

from minibroker.client.advice import require_event_loop
from minibroker.client.protocol import hello_call
from minibroker.client.trio_client import Client, open_client
from minibroker.config import ServerConfig
from minibroker.core.broker import Broker
from minibroker.core.config import FsyncPolicy
from minibroker.server.app import BrokerServer
from minibroker.value_class import replace


class EmbeddedBroker:
    """Handle on a running in-process broker."""

    def __init__(self, server: BrokerServer) -> None:
        self.server = server

    @property
    def core(self) -> Broker:
        """The broker core, for tests that want to look inside."""
        return self.server.broker

    @property
    def port(self) -> int | None:
        """The TCP port, if the broker was opened with ``listen=True``."""
        return self.server.port

    @property
    def http_url(self) -> str:
        """The HTTP face's base URL (JSON API, /openapi.json, /metrics), if opened
        with ``http=True``."""
        if self.server.http_port is None:
            raise RuntimeError("open the broker with open_broker(http=True) for an HTTP face")
        scheme = "https" if self.server.config.tls_cert else "http"
        return f"{scheme}://{self.server.config.host}:{self.server.http_port}"

    @property
    def url(self) -> str:
        """The URL for TCP clients (``minibroker.aio.connect(broker.url)``...);
        only for a broker opened with ``listen=True``."""
        url = self.server.url
        if url is None:
            raise RuntimeError(
                "this in-process broker listens on no socket: open it with "
                "open_broker(listen=True) to get a URL, or use broker.connect()"
            )
        return url

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port`` for Kafka clients, if the broker was opened with ``kafka=True``."""
        from minibroker.server.kafka_door import kafka_bootstrap

        return kafka_bootstrap(self.server)

    @property
    def sqs_endpoint(self) -> str:
        """The SQS endpoint URL (``endpoint_url`` for boto3), if opened with ``sqs=True``."""
        sqs = self.server.sqs
        if sqs is None or self.server.sqs_port is None:
            raise RuntimeError("open the broker with open_broker(sqs=True) for an SQS endpoint")
        return f"{sqs.scheme}://{sqs.default_host}"

    @property
    def amqp_url(self) -> str:
        """``amqp://`` URL of the AMQP 0-9-1 port (``open_broker(amqp=True)``), default vhost."""
        port = self.server.front_end_ports.get("amqp")
        if port is None:
            raise RuntimeError("this broker serves no AMQP: open it with open_broker(amqp=True)")
        return amqp_url(self.server.config.host, port)

    def connect(
        self,
        *,
        namespace: str | None = None,
        token: str | None = None,
        client_name: str = "in-process",
        max_pending: int | None = None,
    ) -> AbstractAsyncContextManager[Client]:
        """An in-process client with the same API as ``minibroker.connect``."""
        stream = self.server.open_in_process_stream()
        hello = hello_call(client_name, token, namespace)
        return open_client(stream, hello, max_pending=max_pending)


@asynccontextmanager
async def open_broker(
    *,
    data_dir: str | Path | None = None,
    fsync: FsyncPolicy = "batch",
    listen: bool = False,
    port: int = 0,
    http: bool = False,
    sqs: bool = False,
    config: ServerConfig | None = None,
    kafka: bool = False,
    amqp: bool = False,
) -> AsyncIterator[EmbeddedBroker]:
    """Run a broker in this Trio run for the duration of the ``async with``.

    Memory storage and no socket by default; ``data_dir`` makes durable
    queues and logs persist there; ``listen=True`` also serves TCP on
    ``port`` (0 = any free port, see ``broker.port``); ``kafka=True`` also
    serves Kafka clients on a free port (``broker.kafka_bootstrap``, docs/kafka.md);
    ``sqs=True`` the SQS endpoint on a free port (``broker.sqs_endpoint``),
    ``amqp=True`` AMQP 0-9-1 (``broker.amqp_url``), and ``http=True``
    the HTTP face (``broker.http_url``).
    """
    require_event_loop(
        "trio",
        "minibroker.open_broker",
        "minibroker.testing.run_in_thread() and minibroker.aio.connect(broker.url)",
    )
    base = config or ServerConfig()
    config = replace(
        base,
        listen=listen,
        port=port,
        data_dir=Path(data_dir) if data_dir is not None else base.data_dir,
        fsync=fsync,
        http_port=0 if http else base.http_port,
        amqp_port=0 if amqp else base.amqp_port,
        sqs_port=0 if sqs else base.sqs_port,
    )
    if kafka and config.kafka_port is None:
        config = replace(config, kafka_port=0)
    server = BrokerServer(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            yield EmbeddedBroker(server)
        finally:
            server.shutdown()


def amqp_url(host: str, port: int, vhost: str = "/") -> str:
    """The ``amqp://`` URL pika, aio-pika, kombu and Celery take (user and password
    are ``guest``: any are accepted without tokens; with tokens, the password is one)."""
    return f"amqp://guest:guest@{host}:{port}/{quote(vhost, safe='')}"
