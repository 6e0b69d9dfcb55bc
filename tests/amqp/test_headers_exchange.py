"""Headers exchanges: ``x-match`` all, any, all-with-x and any-with-x, as RabbitMQ 3.10.

``all`` and ``any`` ignore binding arguments whose names start with ``x-``;
the ``-with-x`` forms match them too (``x-match`` itself aside). Any other
``x-match`` is refused at bind time with 406, in RabbitMQ's words.
"""

from __future__ import annotations

import uuid
from typing import Any

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker
from test_differential_rabbitmq import compare_with_rabbitmq

from minibroker.amqp.exchanges import headers_match

BINDINGS: dict[str, dict[str, Any]] = {
    "all": {"x-match": "all", "a": 1},
    "any ignores x- arguments": {"x-match": "any", "x-foo": "1"},
    "any-with-x": {"x-match": "any-with-x", "x-foo": "1"},
    "all-with-x": {"x-match": "all-with-x", "x-foo": "1", "a": 1},
    "all-with-x, no x- argument": {"x-match": "all-with-x", "a": 1},
    "all of nothing": {"x-match": "all"},
    "any of nothing": {"x-match": "any"},
    "no x-match": {},
    "void value: presence": {"x-match": "all", "a": None},
}
MESSAGES: list[dict[str, Any] | None] = [
    {"a": 1},
    {"x-foo": "1"},
    {"x-foo": "1", "a": 1},
    {},
    None,
    {"a": 1, "x-match": "any-with-x"},
    {"a": "1"},
]
#: What RabbitMQ 3.10 routed (headers_probe run against it, 2026-12-07).
RABBITMQ_ROUTES = {
    "all": [0, 2, 5],
    "any ignores x- arguments": [],
    "any-with-x": [1, 2],
    "all-with-x": [2],
    "all-with-x, no x- argument": [0, 2, 5],
    "all of nothing": [0, 1, 2, 3, 4, 5, 6],
    "any of nothing": [],
    "no x-match": [0, 1, 2, 3, 4, 5, 6],
    "void value: presence": [0, 2, 5, 6],
}


@pytest.mark.parametrize("name", BINDINGS)
def test_bindings_match_the_messages_rabbitmq_routes(name: str) -> None:
    matched = [i for i, headers in enumerate(MESSAGES) if headers_match(BINDINGS[name], headers)]
    assert matched == RABBITMQ_ROUTES[name]


def _routes(params: pika.ConnectionParameters) -> list[Any]:
    """Each binding's queue's messages, then the answers to bad ``x-match`` values."""
    suffix = uuid.uuid4().hex[:8]
    seen: list[Any] = []
    connection = pika.BlockingConnection(params)
    try:
        ch = connection.channel()
        exchange = f"headers-{suffix}"
        ch.exchange_declare(exchange, "headers", auto_delete=True)
        for i, arguments in enumerate(BINDINGS.values()):
            ch.queue_declare(f"h{i}-{suffix}", exclusive=True)
            ch.queue_bind(f"h{i}-{suffix}", exchange, arguments=arguments)
        ch.confirm_delivery()
        for i, headers in enumerate(MESSAGES):
            ch.basic_publish(exchange, "", b"%d" % i, pika.BasicProperties(headers=headers))
        for i in range(len(BINDINGS)):
            got = []
            while (message := ch.basic_get(f"h{i}-{suffix}", auto_ack=True))[0] is not None:
                got.append(int(message[2]))
            seen.append(got)
        for bad in ("bogus", 5, b"any"):
            ch = connection.channel()
            try:
                ch.queue_declare(f"bad-{suffix}", exclusive=True)
                ch.queue_bind(f"bad-{suffix}", exchange, arguments={"x-match": bad})
                seen.append("bound")
            except ChannelClosedByBroker as exc:
                seen.append((exc.reply_code, exc.reply_text))
        ch = connection.channel()
        try:
            ch.exchange_declare(f"to-{suffix}", "fanout", auto_delete=True)
            ch.exchange_bind(f"to-{suffix}", exchange, arguments={"x-match": "bogus"})
            seen.append("bound")
        except ChannelClosedByBroker as exc:
            seen.append((exc.reply_code, exc.reply_text))
    finally:
        if connection.is_open:
            connection.close()
    return seen


def test_a_bad_x_match_is_refused_at_bind_time(minibroker_amqp_url: str) -> None:
    seen = _routes(pika.URLParameters(minibroker_amqp_url))
    assert seen[: len(BINDINGS)] == list(RABBITMQ_ROUTES.values())
    value = (
        'PRECONDITION_FAILED - Invalid x-match field value <<"bogus">>; '
        "expected all, any, all-with-x, or any-with-x"
    )
    assert seen[len(BINDINGS) :] == [
        (406, value),
        (
            406,
            "PRECONDITION_FAILED - Invalid x-match field type signedint (value 5); "
            "expected longstr",
        ),
        (
            406,
            'PRECONDITION_FAILED - Invalid x-match field type binary (value <<"any">>); '
            "expected longstr",
        ),
        (406, value),  # Exchange.Bind from a headers exchange too
    ]


def test_headers_routing_looks_the_same_from_minibroker_and_rabbitmq(
    minibroker_amqp_url: str,
) -> None:
    compare_with_rabbitmq(_routes, minibroker_amqp_url)
