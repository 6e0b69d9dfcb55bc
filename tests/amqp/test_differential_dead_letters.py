"""Dead-letter cycles and the ``x-death`` header, through pika, against minibroker and RabbitMQ.

RabbitMQ's rule: a message is dropped instead of being dead-lettered into a
queue it was already dead-lettered from, unless it was rejected somewhere in
between. The scenario makes every death visible: the dead-letter exchanges
are fanouts that also feed an ``audit`` queue, so a message going round a
cycle again would leave one more dead letter there. As in
test_differential_rabbitmq.py, RabbitMQ is the one on 127.0.0.1:5672, and
the test is skipped, saying so, when it is not there. TTLs are short (50 ms)
and waits are bounded polls: only what the client observes is compared.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pika
from test_differential_rabbitmq import compare_with_rabbitmq

TTL_MS = 50
#: How long after the last expected death the queues must stay as they are.
SETTLE = 0.5
#: The most a wait for what must happen takes: reached only by a broken
#: broker, never a pace (CI's machine runs at load 8 and more).
WAIT = 30.0


def dead_letter_cycles_scenario(params: pika.ConnectionParameters) -> list[Any]:
    seen: list[Any] = []
    suffix = uuid.uuid4().hex[:8]
    queues: list[str] = []
    exchanges: list[str] = []

    def strip(value: Any) -> Any:
        """``value`` without this run's suffix (names differ between runs)."""
        if isinstance(value, str):
            return value.replace(f"-{suffix}", "")
        if isinstance(value, list | tuple):
            return type(value)(strip(v) for v in value)
        return value

    def death_view(props: Any) -> list[Any]:
        headers = props.headers or {}
        deaths = [
            (
                strip(d.get("queue")),
                d.get("reason"),
                d.get("count"),
                strip(d.get("exchange")),
                strip(d.get("routing-keys")),
                type(d.get("time")).__name__,
                sorted(d),
            )
            for d in headers.get("x-death") or []
        ]
        firsts = {k: strip(v) for k, v in headers.items() if k.startswith("x-first-death")}
        return [deaths, sorted(firsts.items()), props.expiration]

    connection = pika.BlockingConnection(params)
    try:
        ch = connection.channel()
        ch.confirm_delivery()

        def declare(label: str, **arguments: Any) -> str:
            name = f"{label}-{suffix}"
            queues.append(name)
            ch.queue_declare(name, arguments=arguments or None)
            return name

        def fanout(label: str, *bound: str) -> str:
            name = f"{label}-{suffix}"
            exchanges.append(name)
            ch.exchange_declare(name, "fanout")
            for queue in bound:
                ch.queue_bind(queue, name)
            return name

        def count(queue: str) -> int:
            return int(ch.queue_declare(queue, passive=True).method.message_count)

        def wait_for(queue: str, expected: int) -> None:
            deadline = time.monotonic() + WAIT
            while count(queue) < expected and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(SETTLE)  # a cycle that goes on would add more by now

        def wait_until_empty(queue: str) -> None:
            deadline = time.monotonic() + WAIT
            while count(queue) and time.monotonic() < deadline:
                time.sleep(0.01)

        def drain(queue: str) -> None:
            while True:
                method, props, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    return
                seen.append(
                    ("got", strip(queue), body, strip(method.routing_key), *death_view(props))
                )

        # 1. a <-> b, each expiring into the other through a fanout that also
        # feeds audit: a dies into b (and audit), b dies into audit only.
        audit = declare("audit")
        to_b, to_a = f"to-b-{suffix}", f"to-a-{suffix}"
        a = declare("a", **{"x-message-ttl": TTL_MS, "x-dead-letter-exchange": to_b})
        b = declare("b", **{"x-message-ttl": TTL_MS, "x-dead-letter-exchange": to_a})
        fanout("to-b", b, audit)
        fanout("to-a", a, audit)
        ch.basic_publish("", a, b"ping-pong", pika.BasicProperties(expiration="60000"))
        wait_for(audit, 2)
        seen.append(("counts", count(a), count(b), count(audit)))
        letters: list[Any] = []
        while True:
            method, props, body = ch.basic_get(audit, auto_ack=True)
            if method is None:
                break
            letters.append((props, body))
            seen.append(("audit", body, strip(method.routing_key), *death_view(props)))

        # 2. A client republishes the last dead letter (x-death: b, then a) into
        # b: its history comes with it, so its death in b does not reach a.
        props, body = letters[-1]
        ch.basic_publish("", b, body, props)
        wait_for(audit, 1)
        seen.append(("counts after republish", count(a), count(b), count(audit)))
        drain(audit)

        # 3. A queue expiring into itself through the default exchange.
        loop = declare(
            "loop",
            **{
                "x-message-ttl": TTL_MS,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": f"loop-{suffix}",
            },
        )
        ch.basic_publish("", loop, b"self")
        wait_until_empty(loop)  # its first expiry: a TTL timer late on a loaded machine
        time.sleep(SETTLE)  # a cycle that goes on would have put it back by now
        seen.append(("loop", count(loop)))

        # 4. Delayed retries: rejected work waits in retry (TTL) and comes back,
        # round after round; x-death counts each (queue, reason).
        retry = f"retry-{suffix}"
        work = declare("work", **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": retry})
        declare(
            "retry",
            **{
                "x-message-ttl": TTL_MS,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": work,
            },
        )
        ch.basic_publish("", work, b"job")
        for _ in range(3):
            deadline = time.monotonic() + WAIT
            method, props, body = ch.basic_get(work)
            while method is None and time.monotonic() < deadline:
                time.sleep(0.01)
                method, props, body = ch.basic_get(work)
            seen.append(("work", body, *death_view(props)))
            ch.basic_reject(method.delivery_tag, requeue=False)
        wait_for(work, 1)
        drain(work)

        # 5. expiration "0" and nobody to take it: expired on arrival, and the
        # dead letter keeps the expiration in x-death only.
        dead = declare("dead")
        brief = declare(
            "brief", **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}
        )
        ch.basic_publish("", brief, b"now or never", pika.BasicProperties(expiration="0"))
        method, _, _ = ch.basic_get(brief, auto_ack=True)
        seen.append(("brief", method is None))
        wait_for(dead, 1)
        drain(dead)

        for name in queues:
            ch.queue_delete(name)
        for name in exchanges:
            ch.exchange_delete(name)
    finally:
        if connection.is_open:
            connection.close()
    return seen


def test_dead_letter_cycles_and_x_death_look_the_same_from_minibroker_and_rabbitmq(
    minibroker_amqp_url: str,
) -> None:
    compare_with_rabbitmq(dead_letter_cycles_scenario, minibroker_amqp_url)
