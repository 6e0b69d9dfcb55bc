"""Sender-selected distribution (``CC``/``BCC``), through pika, against minibroker and RabbitMQ.

What is compared: where a message with CC and BCC headers goes on publish
(every key routes, each queue takes it once, BCC is gone from what consumers
get), where its dead letter goes with and without ``x-dead-letter-routing-key``
(without: all its keys again, BCC ones included; with: that key alone, and
CC removed), the ``routing-keys`` of its ``x-death`` entry, and the channel
error for a CC or BCC that is not an array. RabbitMQ is the one on
127.0.0.1:5672; the test is skipped, saying so, when it is not there.
Dead-lettering is asynchronous in RabbitMQ, so dead letters are awaited with
bounded polls.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pika
from pika.exceptions import ChannelClosedByBroker
from test_differential_rabbitmq import compare_with_rabbitmq

#: How long after the expected dead letters the other queues must stay empty.
SETTLE = 0.3
#: The most a wait for what must happen takes: reached only by a broken
#: broker, never a pace (CI's machine runs at load 8 and more).
WAIT = 30.0


def sender_selected_scenario(params: pika.ConnectionParameters) -> list[Any]:
    seen: list[Any] = []
    suffix = uuid.uuid4().hex[:8]
    queues: list[str] = []

    def strip(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(f"-{suffix}", "")
        if isinstance(value, list | tuple):
            return type(value)(strip(v) for v in value)
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        return value

    def view(props: Any) -> Any:
        headers = dict(props.headers or {})
        deaths = [
            (d.get("queue"), d.get("reason"), d.get("exchange"), d.get("routing-keys"))
            for d in headers.pop("x-death", None) or []
        ]
        return strip(sorted(headers.items())), strip(deaths)

    connection = pika.BlockingConnection(params)
    try:
        ch = connection.channel()
        ch.confirm_delivery()

        def declare(label: str, **arguments: Any) -> str:
            name = f"{label}-{suffix}"
            queues.append(name)
            ch.queue_declare(name, arguments=arguments or None)
            return name

        def exchange(label: str) -> str:
            name = f"{label}-{suffix}"
            ch.exchange_declare(name, "direct", auto_delete=True)
            return name

        def count(queue: str) -> int:
            return int(ch.queue_declare(queue, passive=True).method.message_count)

        def take(queue: str) -> Any:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return (strip(queue), None)
            return (
                strip(queue),
                body,
                strip(method.exchange),
                strip(method.routing_key),
                *view(props),
            )

        def wait_for(queue: str) -> None:
            deadline = time.monotonic() + WAIT
            while count(queue) < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(SETTLE)

        # 1. Publish: CC and BCC name queues of the default exchange; a key named
        # twice (and the publish's own key in CC) still delivers once.
        q1, q2, q3 = declare("q1"), declare("q2"), declare("q3")
        headers = {"CC": [q2, q1, 7], "BCC": [q3, q2], "x": "y"}
        ch.basic_publish("", q1, b"m1", pika.BasicProperties(headers=headers))
        seen.append(("counts", count(q1), count(q2), count(q3)))
        seen.extend(take(q) for q in (q1, q2, q3))

        # 1b. A topic exchange, and an exchange bound to it: every key is
        # matched against every binding, along exchange bindings too.
        topic, onward = f"topic-{suffix}", f"onward-{suffix}"
        ch.exchange_declare(topic, "topic", auto_delete=True)
        ch.exchange_declare(onward, "fanout", auto_delete=True)
        t1, t2, t3 = declare("t1"), declare("t2"), declare("t3")
        ch.queue_bind(t1, topic, "a.*")
        ch.queue_bind(t2, topic, "b.#")
        ch.exchange_bind(onward, topic, "c.#")
        ch.queue_bind(t3, onward)
        headers = {"CC": ["b.y", "a.w"], "BCC": ["c.1"]}
        ch.basic_publish(topic, "a.x", b"t", pika.BasicProperties(headers=headers))
        seen.append(("topic counts", count(t1), count(t2), count(t3)))
        seen.extend(take(q) for q in (t1, t2, t3))
        ch.exchange_delete(onward)
        ch.exchange_delete(topic)

        # 2. A message with only CC keys routed is not returned as unroutable.
        inbound, dlx = exchange("in"), exchange("dlx")
        src = declare("src", **{"x-dead-letter-exchange": dlx})
        ch.queue_bind(src, inbound, "src")
        ch.basic_publish(
            inbound, "nowhere", b"m0", pika.BasicProperties(headers={"CC": ["src"]}), mandatory=True
        )
        seen.append(("cc only", count(src)))
        ch.queue_purge(src)

        # 3. Dead-lettered without a dead-letter routing key: all its keys again.
        targets = {}
        for key in ("src", "src2", "a", "b", "k"):
            targets[key] = declare(f"to-{key}")
            ch.queue_bind(targets[key], dlx, key)
        ch.basic_publish(
            inbound, "src", b"m2", pika.BasicProperties(headers={"CC": ["a"], "BCC": ["b"]})
        )
        method, props, _ = ch.basic_get(src)
        seen.append(("src got", strip(method.routing_key), *view(props)))
        ch.basic_reject(method.delivery_tag, requeue=False)
        wait_for(targets["b"])
        seen.extend(take(q) for q in targets.values())

        # 4. With a dead-letter routing key: that key alone, and CC removed.
        src2 = declare("src2", **{"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "k"})
        ch.queue_bind(src2, inbound, "src2")
        ch.basic_publish(
            inbound, "src2", b"m3", pika.BasicProperties(headers={"CC": ["a"], "BCC": ["b"]})
        )
        method, _, _ = ch.basic_get(src2)
        ch.basic_reject(method.delivery_tag, requeue=False)
        wait_for(targets["k"])
        seen.extend(take(q) for q in targets.values())

        # 5. Expired, with non-string CC entries (ignored) and an empty BCC.
        src3 = declare("src3", **{"x-dead-letter-exchange": dlx, "x-message-ttl": 0})
        ch.queue_bind(src3, inbound, "src3")
        props = pika.BasicProperties(headers={"CC": ["a", 5, b"b"], "BCC": []})
        ch.basic_publish(inbound, "src3", b"m4", props)
        wait_for(targets["a"])
        seen.extend(take(q) for q in targets.values())

        # 6. A CC or BCC that is not an array: the message is invalid.
        for name, value in (("CC", "a"), ("BCC", 5)):
            channel = connection.channel()
            try:
                channel.basic_publish(
                    inbound, "src", b"x", pika.BasicProperties(headers={name: value})
                )
                channel.queue_declare(src, passive=True)
                seen.append(("invalid", name, "accepted"))
            except ChannelClosedByBroker as exc:
                seen.append(("invalid", name, exc.reply_code, exc.reply_text))
        seen.append(("src after invalid", count(src)))

        for name in queues:
            ch.queue_delete(name)
        ch.exchange_delete(inbound)
        ch.exchange_delete(dlx)
    finally:
        if connection.is_open:
            connection.close()
    return seen


def test_cc_and_bcc_route_and_dead_letter_as_in_rabbitmq(minibroker_amqp_url: str) -> None:
    compare_with_rabbitmq(sender_selected_scenario, minibroker_amqp_url)
