"""pika's BlockingConnection against minibroker's AMQP port: what the client observes."""

from __future__ import annotations

import socket

import pika
import pika.exceptions
import pytest

import minibroker
from minibroker.testing import ThreadedBroker


def test_confirmed_publish_then_get_keeps_properties_and_headers(
    connection: pika.BlockingConnection,
) -> None:
    ch = connection.channel()
    ch.confirm_delivery()
    ch.queue_declare("jobs")
    props = pika.BasicProperties(
        content_type="text/plain",
        headers={"n": 1, "s": "x"},
        correlation_id="c-1",
        delivery_mode=2,
    )
    ch.basic_publish("", "jobs", b"hello", props)
    method, got, body = ch.basic_get("jobs")
    assert body == b"hello"
    assert (method.delivery_tag, method.redelivered, method.routing_key) == (1, False, "jobs")
    assert got.content_type == "text/plain"
    assert got.headers == {"n": 1, "s": "x"}
    assert got.correlation_id == "c-1"
    ch.basic_ack(method.delivery_tag)
    assert ch.basic_get("jobs") == (None, None, None)


def test_unroutable_mandatory_publish_is_returned_and_still_confirmed(
    connection: pika.BlockingConnection,
) -> None:
    ch = connection.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as raised:
        ch.basic_publish("", "nowhere", b"lost", mandatory=True)
    assert raised.value.messages[0].body == b"lost"
    ch.basic_publish("", "nowhere", b"dropped")  # not mandatory: dropped silently, acked


def test_consume_with_prefetch_holds_at_most_prefetch_unacked(
    connection: pika.BlockingConnection,
) -> None:
    ch = connection.channel()
    ch.queue_declare("work")
    for i in range(5):
        ch.basic_publish("", "work", str(i).encode())
    ch.basic_qos(prefetch_count=2)
    received: list[pika.spec.Basic.Deliver] = []
    ch.basic_consume("work", lambda c, m, p, b: received.append(m))
    connection.process_data_events(time_limit=0.2)
    assert len(received) == 2
    other = connection.channel()
    assert other.queue_declare("work", passive=True).method.message_count == 3
    ch.basic_ack(received[1].delivery_tag, multiple=True)
    while len(received) < 4:
        connection.process_data_events(time_limit=0.1)
    assert [m.delivery_tag for m in received] == [1, 2, 3, 4]


def test_a_publish_on_one_connection_reaches_a_consumer_on_another(
    minibroker_amqp_url: str, connection: pika.BlockingConnection
) -> None:
    consumer = connection.channel()
    consumer.queue_declare("across")
    received: list[bytes] = []
    consumer.basic_consume("across", lambda c, m, p, b: received.append(b), auto_ack=True)
    publisher = pika.BlockingConnection(pika.URLParameters(minibroker_amqp_url))
    publisher.channel().basic_publish("", "across", b"hi")
    publisher.close()
    # The consumer's connection sends nothing meanwhile: only the broker
    # waking that connection's writer can bring the delivery.
    for _ in range(100):
        if received:
            break
        connection.process_data_events(time_limit=0.05)
    assert received == [b"hi"]


def test_nack_and_channel_close_requeue_with_redelivered(
    connection: pika.BlockingConnection,
) -> None:
    ch = connection.channel()
    ch.queue_declare("again")
    ch.basic_publish("", "again", b"a")
    ch.basic_publish("", "again", b"b")
    first, _, _ = ch.basic_get("again")
    ch.basic_nack(first.delivery_tag, requeue=True)
    method, _, body = ch.basic_get("again")
    assert (body, method.redelivered) == (b"a", True)
    method, _, body = ch.basic_get("again")
    assert (body, method.redelivered) == (b"b", False)
    ch.close()  # two unacked: back to the queue, in order
    ch2 = connection.channel()
    bodies = []
    for _ in range(2):
        method, _, body = ch2.basic_get("again", auto_ack=True)
        bodies.append((body, method.redelivered))
    assert bodies == [(b"a", True), (b"b", True)]


def test_a_dropped_connection_requeues_its_unacked_messages(
    minibroker_amqp_url: str, connection: pika.BlockingConnection
) -> None:
    ch = connection.channel()
    ch.queue_declare("held")
    ch.basic_publish("", "held", b"m")
    doomed = pika.BlockingConnection(pika.URLParameters(minibroker_amqp_url))
    assert doomed.channel().basic_get("held")[2] == b"m"
    # Vanish without Connection.Close, as Celery does.
    sock = doomed._impl._transport._sock
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    for _ in range(100):
        method, _, body = ch.basic_get("held")
        if method is not None:
            break
        connection.process_data_events(time_limit=0.05)
    assert (body, method.redelivered) == (b"m", True)


def test_reject_without_requeue_dead_letters_through_the_default_exchange(
    connection: pika.BlockingConnection,
) -> None:
    ch = connection.channel()
    ch.queue_declare("dead")
    ch.queue_declare(
        "live",
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"},
    )
    ch.basic_publish("", "live", b"bad")
    method, _, _ = ch.basic_get("live")
    ch.basic_reject(method.delivery_tag, requeue=False)
    assert ch.basic_get("dead", auto_ack=True)[2] == b"bad"


def test_direct_reply_to_rpc(minibroker_amqp_url: str, connection: pika.BlockingConnection) -> None:
    server_conn = pika.BlockingConnection(pika.URLParameters(minibroker_amqp_url))
    server = server_conn.channel()
    server.queue_declare("rpc")
    client = connection.channel()
    client.confirm_delivery()  # the publish below returns once the broker has it
    replies: list[tuple[str, bytes]] = []
    client.basic_consume(
        "amq.rabbitmq.reply-to",
        lambda c, m, p, b: replies.append((p.correlation_id, b)),
        auto_ack=True,
    )
    client.basic_publish(
        "",
        "rpc",
        b"ping",
        pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="42"),
    )
    _, props, body = server.basic_get("rpc", auto_ack=True)
    assert props.reply_to.startswith("amq.rabbitmq.reply-to.")
    server.basic_publish(
        "", props.reply_to, body + b"-pong", pika.BasicProperties(correlation_id="42")
    )
    while not replies:
        connection.process_data_events(time_limit=0.05)
    assert replies == [("42", b"ping-pong")]
    server_conn.close()


def test_exchanges_route_direct_fanout_topic_and_headers(
    connection: pika.BlockingConnection,
) -> None:
    ch = connection.channel()
    for name in ("d", "f1", "f2", "t", "h"):
        ch.queue_declare(name)
    ch.exchange_declare("ex.direct", "direct")
    ch.exchange_declare("ex.fanout", "fanout")
    ch.exchange_declare("ex.topic", "topic")
    ch.queue_bind("d", "ex.direct", "k")
    ch.queue_bind("f1", "ex.fanout")
    ch.queue_bind("f2", "ex.fanout")
    ch.queue_bind("t", "ex.topic", "orders.*.created")
    ch.queue_bind("t", "ex.topic", "audit.#")
    ch.queue_bind("h", "amq.headers", arguments={"x-match": "any", "kind": "a", "z": "b"})
    ch.basic_publish("ex.direct", "k", b"direct")
    ch.basic_publish("ex.direct", "other", b"nowhere")
    ch.basic_publish("ex.fanout", "ignored", b"fan")
    ch.basic_publish("ex.topic", "orders.eu.created", b"t1")
    ch.basic_publish("ex.topic", "orders.eu.x.created", b"not-t")
    ch.basic_publish("ex.topic", "audit", b"t2")
    ch.basic_publish("amq.headers", "", b"h1", pika.BasicProperties(headers={"kind": "a"}))
    ch.basic_publish("amq.headers", "", b"not-h", pika.BasicProperties(headers={"kind": "c"}))

    def drain(queue: str) -> list[bytes]:
        out = []
        while True:
            method, _, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append(body)

    assert drain("d") == [b"direct"]
    assert drain("f1") == drain("f2") == [b"fan"]
    assert drain("t") == [b"t1", b"t2"]
    assert drain("h") == [b"h1"]
    ch.queue_unbind("t", "ex.topic", "audit.#")
    ch.basic_publish("ex.topic", "audit.x", b"gone")
    assert drain("t") == []


def test_channel_errors_close_only_the_channel(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as missing:
        ch.queue_declare("absent", passive=True)
    assert missing.value.reply_code == 404
    ch = connection.channel()
    ch.queue_declare("q", durable=False)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as inequivalent:
        ch.queue_declare("q", arguments={"x-max-length": 3})
    assert inequivalent.value.reply_code == 406
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as reserved:
        ch.queue_declare("amq.mine")
    assert reserved.value.reply_code == 403
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as bad_tag:
        ch.basic_ack(99)
        ch.queue_declare("q")  # a round trip, so the close arrives
    assert bad_tag.value.reply_code == 406
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as no_exchange:
        ch.basic_publish("no-such-exchange", "k", b"x")
        ch.queue_declare("q")
    assert no_exchange.value.reply_code == 404
    assert connection.channel().queue_declare("q").method.queue == "q"


def test_prefetch_size_closes_the_connection_with_540(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        ch.basic_qos(prefetch_size=1024)
    assert closed.value.reply_code == 540


def test_exclusive_queue_is_locked_to_its_connection_and_goes_with_it(
    minibroker_amqp_url: str, connection: pika.BlockingConnection
) -> None:
    owner = pika.BlockingConnection(pika.URLParameters(minibroker_amqp_url))
    name = owner.channel().queue_declare("", exclusive=True).method.queue
    assert name.startswith("amq.gen-")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as locked:
        connection.channel().queue_declare(name, passive=True)
    assert locked.value.reply_code == 405
    owner.close()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
        connection.channel().queue_declare(name, passive=True)
    assert gone.value.reply_code == 404


def test_deleting_a_queue_cancels_its_consumers(connection: pika.BlockingConnection) -> None:
    consumer = connection.channel()
    consumer.queue_declare("doomed")
    cancelled: list[str] = []
    consumer.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = consumer.basic_consume("doomed", lambda *args: None)
    connection.channel().queue_delete("doomed")
    while not cancelled:
        connection.process_data_events(time_limit=0.05)
    assert cancelled == [tag]


def test_auto_delete_queue_goes_after_its_last_consumer(
    connection: pika.BlockingConnection,
) -> None:
    ch = connection.channel()
    ch.queue_declare("brief", auto_delete=True)
    tag = ch.basic_consume("brief", lambda *args: None)
    ch.basic_cancel(tag)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
        ch.queue_declare("brief", passive=True)
    assert gone.value.reply_code == 404


def test_message_ttl_and_x_expires_follow_the_broker_clock(
    minibroker_amqp_server: ThreadedBroker, connection: pika.BlockingConnection
) -> None:
    ch = connection.channel()
    ch.confirm_delivery()  # the publish is in before the clock moves
    ch.queue_declare("ttl", arguments={"x-message-ttl": 5000})
    ch.queue_declare("idle", arguments={"x-expires": 60000})
    ch.basic_publish("", "ttl", b"stale")
    minibroker_amqp_server.advance(6)
    assert ch.basic_get("ttl") == (None, None, None)
    minibroker_amqp_server.advance(61)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
        ch.queue_declare("idle", passive=True)
    assert gone.value.reply_code == 404


def test_max_length_drops_the_head_by_default(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    ch.queue_declare("short", arguments={"x-max-length": 2})
    for body in (b"1", b"2", b"3"):
        ch.basic_publish("", "short", body)
    assert [ch.basic_get("short", auto_ack=True)[2] for _ in range(2)] == [b"2", b"3"]


def test_reject_publish_overflow_nacks_in_confirm_mode(
    connection: pika.BlockingConnection,
) -> None:
    ch = connection.channel()
    ch.confirm_delivery()
    ch.queue_declare("full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.basic_publish("", "full", b"fits")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", "full", b"refused")


def test_amqp_and_native_doors_share_topics_and_queues(
    minibroker_amqp_server: ThreadedBroker,
    minibroker_namespace: str,
    connection: pika.BlockingConnection,
) -> None:
    ch = connection.channel()
    ch.confirm_delivery()
    ch.queue_declare("orders")
    ch.queue_bind("orders", "amq.topic", "orders.#")
    url = minibroker_amqp_server.url_for(minibroker_namespace)
    with minibroker.connect_sync(url) as mb:
        assert "orders" in {q.queue for q in mb.list_queues()}
        with mb.subscribe("orders.*") as sub:
            ch.basic_publish("amq.topic", "orders.created", b"from-amqp")
            message = next(iter(sub))
            assert (message.topic, message.body) == ("orders.created", b"from-amqp")
        mb.publish("orders.shipped", b"from-native", headers={"k": "v"})
    method, props, body = ch.basic_get("orders", auto_ack=True)
    assert (body, method.routing_key) == (b"from-amqp", "orders.created")
    method, props, body = ch.basic_get("orders", auto_ack=True)
    assert (body, method.exchange, method.routing_key) == (
        b"from-native",
        "amq.topic",
        "orders.shipped",
    )
    assert props.headers == {"k": "v"}


def test_expired_messages_dead_letter_through_an_exchange_with_x_death(
    minibroker_amqp_server: ThreadedBroker, connection: pika.BlockingConnection
) -> None:
    ch = connection.channel()
    ch.confirm_delivery()
    ch.exchange_declare("dlx", "fanout")
    ch.queue_declare("graveyard")
    ch.queue_bind("graveyard", "dlx")
    ch.queue_declare("waiting", arguments={"x-dead-letter-exchange": "dlx"})
    ch.basic_publish(
        "", "waiting", b"late", pika.BasicProperties(expiration="1000", headers={"a": "b"})
    )
    ch.basic_publish("", "waiting", b"kept")
    minibroker_amqp_server.advance(2)
    method, props, body = ch.basic_get("graveyard", auto_ack=True)
    assert (body, method.exchange, method.routing_key) == (b"late", "dlx", "waiting")
    assert props.expiration is None
    assert props.headers["a"] == "b"
    [death] = props.headers["x-death"]
    assert (death["reason"], death["queue"], death["routing-keys"]) == (
        "expired",
        "waiting",
        ["waiting"],
    )
    assert ch.basic_get("waiting", auto_ack=True)[2] == b"kept"


def test_an_exclusive_consumer_keeps_others_out(
    minibroker_amqp_url: str, connection: pika.BlockingConnection
) -> None:
    ch = connection.channel()
    ch.queue_declare("mine")
    ch.basic_consume("mine", lambda *args: None, exclusive=True)
    other = pika.BlockingConnection(pika.URLParameters(minibroker_amqp_url))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        other.channel().basic_consume("mine", lambda *args: None)
    assert refused.value.reply_code == 403
    other.close()


def test_global_prefetch_limits_the_channels_consumers_together(
    connection: pika.BlockingConnection,
) -> None:
    ch = connection.channel()
    for name in ("a", "b"):
        ch.queue_declare(name)
        for i in range(3):
            ch.basic_publish("", name, f"{name}{i}".encode())
    ch.basic_qos(prefetch_count=3, global_qos=True)
    received: list[tuple[bytes, int]] = []
    ch.basic_consume("a", lambda c, m, p, b: received.append((b, m.delivery_tag)))
    ch.basic_consume("b", lambda c, m, p, b: received.append((b, m.delivery_tag)))
    while len(received) < 3:
        connection.process_data_events(time_limit=0.05)
    # A round trip on the channel: a fourth delivery would have come before its answer.
    ready = sum(ch.queue_declare(n, passive=True).method.message_count for n in ("a", "b"))
    assert (len(received), ready) == (3, 3)
    ch.basic_ack(received[0][1])
    while len(received) < 4:
        connection.process_data_events(time_limit=0.05)
    ready = sum(ch.queue_declare(n, passive=True).method.message_count for n in ("a", "b"))
    assert (len(received), ready) == (4, 2)


def _nested(depth: int) -> dict[str, object]:
    table: dict[str, object] = {}
    for _ in range(depth - 1):
        table = {"a": table}
    return table


def test_header_tables_nest_100_levels_and_no_deeper(minibroker_amqp_url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(minibroker_amqp_url))
    channel = connection.channel()
    channel.queue_declare("deep")
    channel.basic_publish("", "deep", b"ok", pika.BasicProperties(headers=_nested(100)))
    _, properties, _ = channel.basic_get("deep", auto_ack=True)
    assert properties.headers == _nested(100)
    channel.basic_publish("", "deep", b"too deep", pika.BasicProperties(headers=_nested(101)))
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        channel.queue_declare("deep", passive=True)
    assert closed.value.reply_code == 502
    assert "nested more than 100 levels deep" in closed.value.reply_text
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        again = pika.BlockingConnection(pika.URLParameters(minibroker_amqp_url)).channel()
        again.queue_declare("args", arguments={"x-nested": _nested(101)})
    assert closed.value.reply_code == 502


def test_channel_flow_off_stops_deliveries_until_it_is_on_again(
    connection: pika.BlockingConnection,
) -> None:
    consuming, publishing = connection.channel(), connection.channel()
    consuming.queue_declare("paused")
    got: list[bytes] = []
    consuming.basic_consume("paused", lambda c, m, p, body: got.append(body), auto_ack=True)
    assert consuming.flow(False) is False
    publishing.basic_publish("", "paused", b"held")
    # A round trip on the consuming channel: a delivery would have come before it.
    assert consuming.queue_declare("paused", passive=True).method.message_count == 1
    _, _, body = consuming.basic_get("paused", auto_ack=True)  # a get still works
    assert body == b"held"
    publishing.basic_publish("", "paused", b"later")
    assert consuming.queue_declare("paused", passive=True).method.message_count == 1
    assert got == []
    assert consuming.flow(True) is True
    while not got:
        connection.process_data_events(time_limit=1)
    assert got == [b"later"]
