"""Transactions are refused at once, with a code every client treats as final.

minibroker has no transaction coordinator. A transactional producer's first
step (FindCoordinator for its transactional id, or InitProducerId with it)
is answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "minibroker does not
support transactions": each client raises its own error for it at once,
instead of retrying until its timeout as a retriable code would make it.
"""

from __future__ import annotations

import asyncio

import pytest

from kafka_wire.kafka_clients import DEADLINE
from kafka_wire.wire_helpers import ONE_SECOND, call, open_session
from minibroker.testing import KafkaBootstrap

pytestmark = pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning")


def test_confluent_kafka_init_transactions_fails_fatally(
    minibroker_kafka_bootstrap: KafkaBootstrap,
) -> None:
    from confluent_kafka import KafkaError, KafkaException, Producer

    producer = Producer(minibroker_kafka_bootstrap.confluent(**{"transactional.id": "tx"}))
    with pytest.raises(KafkaException) as raised:
        producer.init_transactions(DEADLINE)
    error = raised.value.args[0]
    assert error.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert error.fatal() and "does not support transactions" in error.str()


def test_aiokafka_transactional_producer_fails_to_start(
    minibroker_kafka_bootstrap: KafkaBootstrap,
) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import TransactionalIdAuthorizationFailed

    async def run() -> None:
        producer = AIOKafkaProducer(**minibroker_kafka_bootstrap.kwargs(transactional_id="tx"))
        try:
            with pytest.raises(TransactionalIdAuthorizationFailed):
                await producer.start()
        finally:
            await producer.stop()

    asyncio.run(run())


def test_kafka_python_init_transactions_fails(minibroker_kafka_bootstrap: KafkaBootstrap) -> None:
    from kafka import KafkaProducer
    from kafka.errors import TransactionalIdAuthorizationFailedError

    producer = KafkaProducer(**minibroker_kafka_bootstrap.kwargs(transactional_id="tx"))
    try:
        with pytest.raises(TransactionalIdAuthorizationFailedError):
            producer.init_transactions()
    finally:
        producer.close()


@pytest.mark.parametrize("version", [0, 1])
def test_init_producer_id_with_a_transactional_id_is_refused(version: int) -> None:
    session = open_session()
    response = call(session, 22, version, transactional_id="tx", transaction_timeout=ONE_SECOND)
    assert (response.error_code, response.producer_id) == (53, -1)
