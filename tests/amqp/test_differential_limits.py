"""Priorities and byte limits, run through pika against minibroker and against RabbitMQ.

``x-max-priority``, ``x-max-length-bytes`` and the three ``x-overflow``
policies: what the client observes (delivery order, priorities, confirms
and nacks, dead letters and their x-death reason, error codes) must be the
same. As in test_differential_rabbitmq.py, RabbitMQ is the one on
127.0.0.1:5672, and the test is skipped, saying so, when it is not there.
"""

from __future__ import annotations

import uuid
from typing import Any

import pika
import pika.exceptions
from test_differential_rabbitmq import compare_with_rabbitmq


def limits_scenario(params: pika.ConnectionParameters) -> list[Any]:
    seen: list[Any] = []
    suffix = uuid.uuid4().hex[:8]
    names = {
        kind: f"diff-{kind}-{suffix}" for kind in ("prio", "ranked", "bytes", "drop", "dlx", "dead")
    }
    connection = pika.BlockingConnection(params)
    try:
        ch = connection.channel()
        ch.confirm_delivery()

        def publish(queue: str, body: bytes, priority: int | None = None) -> None:
            try:
                ch.basic_publish("", queue, body, pika.BasicProperties(priority=priority))
                seen.append(("ack", body))
            except pika.exceptions.NackError:
                seen.append(("nack", body))

        def drain(queue: str) -> None:
            while True:
                method, props, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    return
                death = (props.headers or {}).get("x-death")
                reason = death[0]["reason"] if death else None
                seen.append(("got", queue[:-9], body, props.priority, method.redelivered, reason))

        prio, dead = names["prio"], names["dead"]
        ch.queue_declare(dead)
        ch.queue_declare(prio, arguments={"x-max-priority": 5})
        for i, priority in enumerate([None, 9, 3, 5, 0, 7, 3]):
            publish(prio, b"m%d" % i, priority)
        method, _, body = ch.basic_get(prio)
        seen.append(("first", body))
        ch.basic_nack(method.delivery_tag, requeue=True)  # back to the front of priority 5
        publish(prio, b"late", 5)
        drain(prio)

        ch.queue_declare(names["ranked"], arguments={"x-max-priority": 3, "x-max-length": 2})
        for body, priority in ((b"low", 1), (b"high", 3), (b"mid", 2)):
            publish(names["ranked"], body, priority)  # drop-head drops "high", the head
        drain(names["ranked"])

        ch.queue_declare(
            names["bytes"], arguments={"x-max-length-bytes": 10, "x-overflow": "reject-publish"}
        )
        for body in (b"aaaa", b"bbbb", b"cc", b"d"):
            publish(names["bytes"], body)
        method, _, _ = ch.basic_get(names["bytes"])
        publish(names["bytes"], b"eeee")  # the fetched message no longer counts
        ch.basic_nack(method.delivery_tag, requeue=True)  # but counts again once requeued
        publish(names["bytes"], b"f")
        drain(names["bytes"])

        dead_letters = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}
        ch.queue_declare(names["drop"], arguments={"x-max-length-bytes": 10, **dead_letters})
        for body in (b"aaaa", b"bbbb", b"cc", b"ddd", b"e" * 11):
            publish(names["drop"], body)
        drain(names["drop"])
        drain(dead)

        ch.queue_declare(
            names["dlx"],
            arguments={"x-max-length": 1, "x-overflow": "reject-publish-dlx", **dead_letters},
        )
        publish(names["dlx"], b"kept")
        publish(names["dlx"], b"refused")
        drain(names["dlx"])
        drain(dead)

        for attempt in (
            lambda c: c.queue_declare(prio, arguments={"x-max-priority": 6}),
            lambda c: c.queue_declare(f"diff-p256-{suffix}", arguments={"x-max-priority": 256}),
            lambda c: c.queue_declare(f"diff-neg-{suffix}", arguments={"x-max-length-bytes": -1}),
            lambda c: c.queue_declare(f"diff-ovf-{suffix}", arguments={"x-overflow": "nope"}),
        ):
            try:
                attempt(ch)
                seen.append(("no error",))
            except pika.exceptions.ChannelClosedByBroker as exc:
                seen.append(("channel closed", exc.reply_code))
            ch = connection.channel()
            ch.confirm_delivery()
        for name in names.values():
            ch.queue_delete(name)
    finally:
        if connection.is_open:
            connection.close()
    return seen


def test_priorities_and_byte_limits_look_the_same_from_minibroker_and_rabbitmq(
    minibroker_amqp_url: str,
) -> None:
    compare_with_rabbitmq(limits_scenario, minibroker_amqp_url)


def overflow_routes_scenario(params: pika.ConnectionParameters) -> list[Any]:
    """Full reject-publish queues reached through every exchange type, and full
    dead-letter queues under each overflow policy, reached directly and through
    a topic dead-letter exchange."""
    seen: list[Any] = []
    suffix = uuid.uuid4().hex[:8]
    queues: list[str] = []
    exchanges: list[str] = []
    connection = pika.BlockingConnection(params)
    try:
        ch = connection.channel()
        ch.confirm_delivery()

        def declare(label: str, **arguments: Any) -> str:
            name = f"{label}-{suffix}"
            queues.append(name)
            ch.queue_declare(name, arguments=arguments or None)
            return name

        def publish(exchange: str, key: str, body: bytes, mandatory: bool = False) -> None:
            props = pika.BasicProperties(headers={"h": 1})
            try:
                ch.basic_publish(exchange, key, body, props, mandatory=mandatory)
                seen.append(("ack", body))
            except pika.exceptions.NackError:
                seen.append(("nack", body))
            except pika.exceptions.UnroutableError:
                seen.append(("returned", body))

        def drain(queue: str) -> None:
            while True:
                method, props, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    return
                deaths = (props.headers or {}).get("x-death") or []
                seen.append(
                    ("got", queue[:-9], body, [(d["reason"], d["queue"][:-9]) for d in deaths])
                )

        full = declare("full", **{"x-max-length": 1, "x-overflow": "reject-publish"})
        other = declare("other")
        publish("", full, b"first")
        publish("", full, b"default")
        publish("", full, b"default-mandatory", mandatory=True)
        for kind in ("direct", "fanout", "topic", "headers"):
            exchange = f"x-{kind}-{suffix}"
            exchanges.append(exchange)
            ch.exchange_declare(exchange, kind)
            for queue in (full, other):
                ch.queue_bind(queue, exchange, "k", arguments={"x-match": "any", "h": 1})
            publish(exchange, "k", kind.encode())
            publish(exchange, "k", kind.encode() + b"-mandatory", mandatory=True)
            ch.queue_unbind(other, exchange, "k", arguments={"x-match": "any", "h": 1})
            publish(exchange, "k", kind.encode() + b"-only-full", mandatory=True)
        drain(full)
        drain(other)

        topic_dlx = f"dlx-{suffix}"
        exchanges.append(topic_dlx)
        ch.exchange_declare(topic_dlx, "topic")
        for policy, label in (("reject-publish", "rp"), ("reject-publish-dlx", "rd")):
            for via in ("", topic_dlx):
                tag = label + ("t" if via else "d")
                last = declare(f"last{tag}")
                dlq = declare(
                    f"dlq{tag}",
                    **{
                        "x-max-length": 1,
                        "x-overflow": policy,
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": last,
                    },
                )
                if via:
                    ch.queue_bind(dlq, via, f"dead.{tag}")
                source = declare(
                    f"src{tag}",
                    **{
                        "x-dead-letter-exchange": via,
                        "x-dead-letter-routing-key": f"dead.{tag}" if via else dlq,
                    },
                )
                publish("", dlq, b"filler-" + tag.encode())
                publish("", source, b"job-" + tag.encode())
                method, _, _ = ch.basic_get(source)
                ch.basic_reject(method.delivery_tag, requeue=False)
                drain(source)
                drain(dlq)
                drain(last)
        for name in queues:
            ch.queue_delete(name)
        for name in exchanges:
            ch.exchange_delete(name)
    finally:
        if connection.is_open:
            connection.close()
    return seen


def test_full_queues_refuse_through_every_route_as_in_rabbitmq(minibroker_amqp_url: str) -> None:
    compare_with_rabbitmq(overflow_routes_scenario, minibroker_amqp_url)
