"""Fixtures the AMQP tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest


@pytest.fixture
def connection(minibroker_amqp_url: str) -> Iterator[pika.BlockingConnection]:
    """A pika connection to the test broker's AMQP port (test_kombu.py has its own)."""
    conn = pika.BlockingConnection(pika.URLParameters(minibroker_amqp_url))
    yield conn
    if conn.is_open:
        conn.close()
