"""SASL on the Kafka port, through the three real clients: the same tokens and permissions.

A server with tokens logs Kafka clients in with SASL (PLAIN, SCRAM-SHA-256,
SCRAM-SHA-512): the user name is the principal, the password its token
(docs/kafka.md, "Security"). With a permissions file, what a principal may
not do is refused with Kafka's own codes, which each client turns into its
own exception.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from kafka_wire.kafka_clients import CLIENTS, DEADLINE, KafkaClient
from minibroker.access.permissions import Permissions
from minibroker.testing import KafkaBootstrap, ThreadedBroker, run_in_thread

pytestmark = pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning")

TOKENS = {"w-5e4c7": "writer", "r-91b2d": "reader"}
PERMISSIONS = """
allow writer write,admin log:orders-0
allow reader read log:orders-0 group:billing
"""
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True)
class SaslBootstrap(KafkaBootstrap):
    """A bootstrap address plus a SASL login, in each client's own settings."""

    user: str = ""
    password: str = ""
    mechanism: str = "PLAIN"
    #: Where the CA certificate is, for SASL_SSL; None: SASL_PLAINTEXT.
    ca_file: str | None = None

    def confluent(self, **extra: Any) -> dict[str, Any]:
        config = {
            "security.protocol": "SASL_SSL" if self.ca_file else "SASL_PLAINTEXT",
            "sasl.mechanism": self.mechanism,
            "sasl.username": self.user,
            "sasl.password": self.password,
        }
        if self.ca_file:
            config["ssl.ca.location"] = self.ca_file
        return super().confluent(**config, **extra)

    def kwargs(self, **extra: Any) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "security_protocol": "SASL_SSL" if self.ca_file else "SASL_PLAINTEXT",
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.user,
            "sasl_plain_password": self.password,
        }
        if self.ca_file:
            import ssl

            settings["ssl_context"] = ssl.create_default_context(cafile=self.ca_file)
        return super().kwargs(**settings, **extra)


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedBroker]:
    with run_in_thread(
        kafka_port=0, tokens=TOKENS, permissions=Permissions.parse(PERMISSIONS)
    ) as threaded:
        yield threaded


@pytest.fixture(params=CLIENTS, ids=lambda client: client.name)
def client(request: pytest.FixtureRequest) -> KafkaClient:
    return request.param  # type: ignore[no-any-return]


_namespaces = iter(range(1, 10_000))


def login(server: ThreadedBroker, user: str, password: str, mechanism: str) -> SaslBootstrap:
    return SaslBootstrap(
        server.kafka_bootstrap, f"sasl-{next(_namespaces)}", user, password, mechanism
    )


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_principal_logs_in_and_does_what_its_grants_allow(
    client: KafkaClient, mechanism: str, server: ThreadedBroker
) -> None:
    writer = login(server, "writer", "w-5e4c7", mechanism)
    client.produce(writer, "orders", [b"one", b"two"])
    reader = SaslBootstrap(server.kafka_bootstrap, writer.namespace, "reader", "r-91b2d", mechanism)
    assert client.consume(reader, "orders", "billing", 2, manual=True) == [b"one", b"two"]


# ------------------------------------------------------------- refusals


def _confluent_login_error(kafka: SaslBootstrap) -> str:
    from confluent_kafka.admin import AdminClient

    errors: list[Any] = []
    seen = threading.Event()

    def on_error(error: Any) -> None:
        errors.append(error)
        seen.set()

    admin = AdminClient(kafka.confluent(error_cb=on_error))
    deadline = time.monotonic() + DEADLINE
    while not seen.is_set() and time.monotonic() < deadline:
        admin.poll(0.1)
    assert errors, "no error reported"
    return f"{errors[0].name()}: {errors[0].str()}"


def _aiokafka_login_error(kafka: SaslBootstrap) -> str:
    from aiokafka import AIOKafkaProducer

    async def run() -> str:
        producer = AIOKafkaProducer(**kafka.kwargs())
        try:
            await producer.start()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            await producer.stop()
        raise AssertionError("the login was accepted")

    return asyncio.run(run())


def _kafka_python_login_error(kafka: SaslBootstrap, caplog: pytest.LogCaptureFixture) -> str:
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    # kafka-python retries a failed bootstrap until bootstrap_timeout_ms and
    # then reports a timeout; the reason is in its log.
    with caplog.at_level(logging.ERROR, logger="kafka"), pytest.raises(KafkaTimeoutError):
        KafkaProducer(**kafka.kwargs(bootstrap_timeout_ms=1000))
    return "\n".join(record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_wrong_password_is_refused_with_sasl_authentication_failed(
    client: KafkaClient, mechanism: str, server: ThreadedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = login(server, "writer", "r-91b2d", mechanism)  # the reader's token
    if client.name == "confluent-kafka":
        assert _confluent_login_error(wrong).startswith("_AUTHENTICATION")
    elif client.name == "aiokafka":
        with caplog.at_level(logging.ERROR, logger="aiokafka"):
            assert "KafkaConnectionError" in _aiokafka_login_error(wrong)
        assert "SaslAuthenticationFailed" in caplog.text
    else:
        assert "SaslAuthenticationFailed" in _kafka_python_login_error(wrong, caplog)
    assert "invalid user name or password" in caplog.text or client.name == "confluent-kafka"


def _produce_error(client: KafkaClient, kafka: SaslBootstrap, topic: str) -> str:
    """The name of the error producing one record gets."""
    if client.name == "confluent-kafka":
        from confluent_kafka import Producer

        errors: list[Any] = []
        producer = Producer(kafka.confluent())
        producer.produce(topic, b"x", on_delivery=lambda err, _msg: errors.append(err))
        producer.flush(DEADLINE)
        return str(errors[0].name())
    if client.name == "aiokafka":
        from aiokafka import AIOKafkaProducer

        async def run() -> str:
            producer = AIOKafkaProducer(**kafka.kwargs(request_timeout_ms=5000))
            await producer.start()
            try:
                await producer.send_and_wait(topic, b"x")
            except Exception as exc:
                return type(exc).__name__
            finally:
                await producer.stop()
            raise AssertionError("the record was accepted")

        return asyncio.run(run())
    from kafka import KafkaProducer

    producer = KafkaProducer(**kafka.kwargs())
    try:
        producer.send(topic, b"x").get(DEADLINE)
    except Exception as exc:
        return type(exc).__name__
    finally:
        producer.close()
    raise AssertionError("the record was accepted")


def _group_error(client: KafkaClient, kafka: SaslBootstrap, topic: str, group: str) -> str:
    """The name of the error a group consumer gets."""
    if client.name == "confluent-kafka":
        from confluent_kafka import Consumer

        consumer = Consumer(kafka.confluent(**{"group.id": group}))
        consumer.subscribe([topic])
        try:
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                message = consumer.poll(0.1)
                if message is not None and message.error() is not None:
                    return str(message.error().name())
        finally:
            consumer.close()
        raise AssertionError("no error")
    if client.name == "aiokafka":
        from aiokafka import AIOKafkaConsumer

        async def run() -> str:
            consumer = AIOKafkaConsumer(topic, **kafka.kwargs(group_id=group))
            try:
                await consumer.start()
                async with asyncio.timeout(DEADLINE):
                    await consumer.getone()
            except Exception as exc:
                return type(exc).__name__
            finally:
                await consumer.stop()
            raise AssertionError("no error")

        return asyncio.run(run())
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, **kafka.kwargs(group_id=group))
    try:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            consumer.poll(timeout_ms=100)
    except Exception as exc:
        return type(exc).__name__
    finally:
        consumer.close()
    raise AssertionError("no error")


def test_writing_without_the_grant_is_topic_authorization_failed(
    client: KafkaClient, server: ThreadedBroker
) -> None:
    writer = login(server, "writer", "w-5e4c7", "PLAIN")
    client.produce(writer, "orders", [b"kept"])
    reader = SaslBootstrap(server.kafka_bootstrap, writer.namespace, "reader", "r-91b2d")
    assert (
        _produce_error(client, reader, "orders")
        == {
            "confluent-kafka": "TOPIC_AUTHORIZATION_FAILED",
            "aiokafka": "TopicAuthorizationFailedError",
            "kafka-python": "TopicAuthorizationFailedError",
        }[client.name]
    )


def test_a_group_without_the_grant_is_group_authorization_failed(
    client: KafkaClient, server: ThreadedBroker
) -> None:
    writer = login(server, "writer", "w-5e4c7", "PLAIN")
    client.produce(writer, "orders", [b"kept"])
    reader = SaslBootstrap(server.kafka_bootstrap, writer.namespace, "reader", "r-91b2d")
    assert (
        _group_error(client, reader, "orders", "not-billing")
        == {
            "confluent-kafka": "GROUP_AUTHORIZATION_FAILED",
            "aiokafka": "GroupAuthorizationFailedError",
            "kafka-python": "GroupAuthorizationFailedError",
        }[client.name]
    )


# ------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    chain, key, ca_file = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    with chain.open("wb") as out:
        for blob in cert.cert_chain_pems:
            out.write(blob.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    return chain, key, ca_file


def test_sasl_ssl_logs_in_over_tls(client: KafkaClient, tls_files: tuple[Path, Path, Path]) -> None:
    chain, key, ca_file = tls_files
    with run_in_thread(kafka_port=0, tokens=TOKENS, tls_cert=chain, tls_key=key) as tls_server:
        kafka = SaslBootstrap(
            tls_server.kafka_bootstrap, "sealed", "writer", "w-5e4c7", "SCRAM-SHA-256", str(ca_file)
        )
        client.produce(kafka, "secure", [b"sealed"])
        assert client.consume(kafka, "secure", "g", 1, manual=True) == [b"sealed"]
