"""One scenario, run through pika against minibroker and against a real RabbitMQ.

What the client observes (bodies, redelivered flags, delivery tags, message
counts, returns, confirms and nacks, error codes) must be the same. RabbitMQ
is the one on 127.0.0.1:5672 (guest/guest) when it is reachable; the test is
skipped, saying so, when it is not. Names are unique per run, and the
scenario deletes what it declares, so it leaves the shared RabbitMQ as it was.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import pytest

RABBITMQ = ("127.0.0.1", 5672)


def _rabbitmq_reachable() -> bool:
    try:
        with socket.create_connection(RABBITMQ, timeout=0.5):
            return True
    except OSError:
        return False


def scenario(params: pika.ConnectionParameters) -> list[Any]:
    """Run the scenario; return everything the client observed, in order."""
    seen: list[Any] = []
    suffix = uuid.uuid4().hex[:8]
    queue, dead, exchange = f"diff-q-{suffix}", f"diff-dead-{suffix}", f"diff-x-{suffix}"
    connection = pika.BlockingConnection(params)
    try:
        ch = connection.channel()
        ch.confirm_delivery()
        ch.queue_declare(dead)
        declared = ch.queue_declare(
            queue,
            arguments={
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": dead,
                "x-max-length": 10,
            },
        )
        seen.append(("declared", declared.method.message_count, declared.method.consumer_count))
        ch.exchange_declare(exchange, "topic", auto_delete=False)
        ch.queue_bind(queue, exchange, "orders.*.created")
        for key in ("orders.eu.created", "orders.eu.paid", "orders.us.created"):
            try:
                ch.basic_publish(exchange, key, key.encode(), mandatory=True)
                seen.append(("confirmed", key))
            except pika.exceptions.UnroutableError as exc:
                seen.append(("returned", key, [m.body for m in exc.messages]))
        props = pika.BasicProperties(
            content_type="text/plain",
            headers={"n": 1, "s": "x"},
            correlation_id="c1",
            priority=3,
            delivery_mode=2,
        )
        ch.basic_publish("", queue, b"direct", props)

        def get(auto_ack: bool = False) -> Any:
            method, got_props, body = ch.basic_get(queue, auto_ack=auto_ack)
            if method is None:
                seen.append(("empty",))
                return None
            seen.append(
                (
                    "got",
                    body,
                    method.delivery_tag,
                    method.redelivered,
                    method.message_count,
                    method.exchange,
                    method.routing_key,
                )
            )
            return method, got_props

        first, _ = get()
        ch.basic_nack(first.delivery_tag, requeue=True)
        again, _ = get()
        ch.basic_reject(again.delivery_tag, requeue=False)
        get()
        fourth, fourth_props = get()
        seen.append(
            (
                "props",
                fourth_props.content_type,
                fourth_props.headers,
                fourth_props.correlation_id,
                fourth_props.priority,
                fourth_props.delivery_mode,
            )
        )
        ch.basic_ack(fourth.delivery_tag, multiple=True)  # acks third too
        get()
        dead_method, _, dead_body = ch.basic_get(dead, auto_ack=True)
        seen.append(("dead-lettered", dead_body, dead_method.routing_key))

        for i in range(3):
            ch.basic_publish("", queue, f"m{i}".encode())
        ch.basic_qos(prefetch_count=2)
        deliveries: list[Any] = []
        ch.basic_consume(queue, lambda c, m, p, b: deliveries.append((b, m.delivery_tag)))
        while len(deliveries) < 2:
            connection.process_data_events(time_limit=0.05)
        seen.append(("passive", ch.queue_declare(queue, passive=True).method.message_count))
        seen.append(("consumed", deliveries[:2]))
        ch.close()  # two unacked messages go back
        ch = connection.channel()
        seen.append(("after close", ch.queue_declare(queue, passive=True).method.message_count))
        for _ in range(3):
            method, _, body = ch.basic_get(queue, auto_ack=True)
            seen.append(("requeued", body, method.redelivered))

        for attempt in (
            lambda c: c.queue_declare(f"diff-missing-{suffix}", passive=True),
            lambda c: c.queue_declare(queue, arguments={"x-max-length": 11}),
            lambda c: c.exchange_declare("amq.direct", "fanout"),
            lambda c: c.queue_declare("amq.reserved"),
            lambda c: (c.basic_ack(999), c.queue_declare(queue, passive=True)),
            lambda c: (
                c.basic_publish(f"diff-none-{suffix}", "k", b"x"),
                c.queue_declare(queue, passive=True),
            ),
        ):
            try:
                attempt(ch)
                seen.append(("no error",))
            except pika.exceptions.ChannelClosedByBroker as exc:
                seen.append(("channel closed", exc.reply_code))
            ch = connection.channel()
        ch.queue_delete(queue)
        ch.queue_delete(dead)
        ch.exchange_delete(exchange)
        try:
            ch.basic_qos(prefetch_size=10)
            seen.append(("no error",))
        except pika.exceptions.ConnectionClosedByBroker as exc:
            seen.append(("connection closed", exc.reply_code))
    finally:
        if connection.is_open:
            connection.close()
    return [_without(suffix, observation) for observation in seen]


def exchange_bindings_scenario(params: pika.ConnectionParameters) -> list[Any]:
    """Exchange-to-exchange bindings: routing, one copy per queue, cycles, errors, deletion."""
    seen: list[Any] = []
    suffix = uuid.uuid4().hex[:8]
    src, mid, hdr, queue = (f"diff-{n}-{suffix}" for n in ("src", "mid", "hdr", "q"))
    connection = pika.BlockingConnection(params)
    try:
        ch = connection.channel()
        ch.confirm_delivery()
        ch.exchange_declare(src, "topic", auto_delete=False)
        ch.exchange_declare(mid, "fanout", auto_delete=False)
        ch.exchange_declare(hdr, "headers", auto_delete=False)
        ch.queue_declare(queue, exclusive=True)
        ch.exchange_bind(mid, src, "orders.#")
        ch.exchange_bind(src, mid)  # a cycle
        ch.exchange_bind(hdr, src, "#")
        ch.queue_bind(queue, mid)
        ch.queue_bind(queue, hdr, arguments={"x-match": "all", "kind": "a"})
        ch.queue_bind(queue, src, "orders.eu")
        for key, headers in (("orders.eu", {"kind": "a"}), ("orders.us", None), ("x", None)):
            try:
                ch.basic_publish(
                    src, key, key.encode(), pika.BasicProperties(headers=headers), mandatory=True
                )
                seen.append(("confirmed", key))
            except pika.exceptions.UnroutableError:
                seen.append(("returned", key))
        while True:
            method, _, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            seen.append(("got", body, method.exchange, method.routing_key))
        ch.exchange_unbind(mid, src, "orders.#")
        ch.exchange_unbind(mid, src, "never-bound")
        ch.basic_publish(src, "orders.us", b"after unbind")
        seen.append(("count", ch.queue_declare(queue, passive=True).method.message_count))
        for attempt in (
            lambda c: c.exchange_bind(f"diff-none-{suffix}", src, "k"),
            lambda c: c.exchange_bind(src, f"diff-none-{suffix}", "k"),
            lambda c: c.exchange_bind("", src, "k"),
            lambda c: c.exchange_delete(hdr, if_unused=True),
        ):
            try:
                attempt(ch)
                seen.append(("no error",))
            except pika.exceptions.ChannelClosedByBroker as exc:
                seen.append(("channel closed", exc.reply_code))
            ch = connection.channel()
        for name in (src, mid, hdr):
            ch.exchange_delete(name)
    finally:
        if connection.is_open:
            connection.close()
    return [_without(suffix, observation) for observation in seen]


def transactions_scenario(params: pika.ConnectionParameters) -> list[Any]:
    """Tx.Select / Commit / Rollback: when publishes and settlements take effect, and errors."""
    seen: list[Any] = []
    suffix = uuid.uuid4().hex[:8]
    queue = f"diff-tx-{suffix}"
    connection = pika.BlockingConnection(params)
    try:
        observer = connection.channel()
        observer.queue_declare(queue, exclusive=True)

        def count(label: str) -> None:
            seen.append((label, observer.queue_declare(queue, passive=True).method.message_count))

        ch = connection.channel()
        returned: list[bytes] = []
        ch.add_on_return_callback(lambda c, m, p, body: returned.append(body))
        ch.tx_select()
        for body in (b"a", b"b", b"c"):
            ch.basic_publish("", queue, body)
        ch.basic_publish("", f"diff-nowhere-{suffix}", b"unroutable", mandatory=True)
        count("before commit")
        ch.tx_commit()  # a return comes before CommitOk: pika holds it until asked
        connection.process_data_events(time_limit=0)
        seen.append(("returned", returned))
        count("after commit")
        ch.basic_publish("", queue, b"rolled back")
        ch.tx_rollback()
        count("after rollback")
        got = [ch.basic_get(queue) for _ in range(3)]
        seen.append(("got", [(m.delivery_tag, body) for m, _, body in got]))
        ch.basic_ack(got[0][0].delivery_tag)
        ch.basic_reject(got[1][0].delivery_tag, requeue=True)
        ch.tx_commit()
        ch.basic_ack(got[2][0].delivery_tag)
        ch.tx_rollback()
        ch.close()
        count("after close")
        for attempt in (
            lambda c: (c.tx_select(), c.confirm_delivery()),
            lambda c: (c.confirm_delivery(), c.tx_select()),
            lambda c: c.tx_commit(),
            lambda c: c.tx_rollback(),
            lambda c: (
                c.tx_select(),
                c.basic_ack(c.basic_get(queue)[0].delivery_tag),
                c.basic_ack(1),
                c.tx_commit(),
            ),
        ):
            ch = connection.channel()
            try:
                attempt(ch)
                seen.append(("no error",))
            except pika.exceptions.ChannelClosedByBroker as exc:
                seen.append(("channel closed", exc.reply_code))
        # No count after the last one: RabbitMQ requeues what a channel it closed
        # held asynchronously, so a count right after races with it (minibroker
        # requeues before Channel.Close; tests/amqp/test_transactions.py checks).
    finally:
        if connection.is_open:
            connection.close()
    return [_without(suffix, observation) for observation in seen]


def _without(suffix: str, value: Any) -> Any:
    """``value`` with this run's unique suffix taken out of every string in it."""
    if isinstance(value, str):
        return value.replace(suffix, "*")
    if isinstance(value, tuple | list):
        return type(value)(_without(suffix, v) for v in value)
    return value


def test_pika_sees_the_same_from_minibroker_and_rabbitmq(minibroker_amqp_url: str) -> None:
    compare_with_rabbitmq(scenario, minibroker_amqp_url)


def test_exchange_bindings_look_the_same_from_minibroker_and_rabbitmq(
    minibroker_amqp_url: str,
) -> None:
    compare_with_rabbitmq(exchange_bindings_scenario, minibroker_amqp_url)


def test_transactions_look_the_same_from_minibroker_and_rabbitmq(
    minibroker_amqp_url: str,
) -> None:
    compare_with_rabbitmq(transactions_scenario, minibroker_amqp_url)


def compare_with_rabbitmq(run: Callable[[pika.ConnectionParameters], list[Any]], url: str) -> None:
    """Run one scenario on minibroker's AMQP port and on RabbitMQ; what pika saw must match."""
    if not _rabbitmq_reachable():
        pytest.skip("no RabbitMQ on 127.0.0.1:5672 (guest/guest) to compare with")
    ours = run(pika.URLParameters(url))
    theirs = run(
        pika.ConnectionParameters(*RABBITMQ, credentials=pika.PlainCredentials("guest", "guest"))
    )
    _same(ours, theirs)


def _same(ours: list[Any], theirs: list[Any]) -> None:
    for index, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        assert a == b, f"step {index}: minibroker saw {a!r}, RabbitMQ {b!r}"
    assert len(ours) == len(theirs)
