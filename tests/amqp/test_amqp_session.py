"""AmqpSession driven directly, sans-I/O: bytes in, bytes out, no socket, no Trio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from amqp_wire import publish_frames, split_frames
from pamqp import body, commands, frame, header

from minibroker.amqp.connection import AmqpSession, AmqpSettings
from minibroker.amqp.vhost import recover_vhosts
from minibroker.core.broker import Broker
from minibroker.errors import StorageError
from minibroker.server.datadir import DataDirectory


def _open(broker: Broker, *, hold: bool, content_budget: int = 1 << 26) -> AmqpSession:
    if hold:
        # Group commit, as under --fsync batch with a data directory (the
        # durable writes are simulated: see _durable_puts).
        broker.durability.policy = "batch"
    settings = AmqpSettings(
        authenticate=lambda token: object(),
        max_content_in_progress=content_budget,
    )
    session = AmqpSession(broker, 1, settings)
    session.receive_data(b"AMQP\x00\x00\x09\x01")
    session.receive_data(
        frame.marshal(commands.Connection.StartOk({}, "PLAIN", "\0u\0p"), 0)
        + frame.marshal(commands.Connection.TuneOk(2047, 131072, 0), 0)
        + frame.marshal(commands.Connection.Open("/"), 0)
        + frame.marshal(commands.Channel.Open(), 1)
        + frame.marshal(commands.Confirm.Select(), 1)
        + frame.marshal(commands.Queue.Declare(queue="q", durable=True), 1)
    )
    session.data_to_send()
    return session


def _publish(session: AmqpSession, payload: bytes) -> None:
    session.receive_data(publish_frames(payload))


def _durable_puts(broker: Broker) -> None:
    """Make every put into "q" a durable write, as a journaled queue's is."""
    queue = broker.namespace().queues.get("q")
    put = queue.put

    def journaled_put(*args: Any, **options: Any) -> int:
        count = put(*args, **options)
        broker.durability.written()
        return count

    queue.put = journaled_put  # type: ignore[method-assign]


def test_confirms_of_durable_writes_wait_for_the_group_commit() -> None:
    broker = Broker()
    session = _open(broker, hold=True)
    _durable_puts(broker)
    _publish(session, b"one")
    first = broker.durability.generation
    _publish(session, b"two")
    assert split_frames(session.data_to_send()) == []  # nothing confirmed before the fsync
    broker.durability.release(first)
    [ack] = split_frames(session.data_to_send())
    assert isinstance(ack, commands.Basic.Ack) and ack.delivery_tag == 1
    broker.durability.release(broker.durability.generation)
    [ack] = split_frames(session.data_to_send())
    assert isinstance(ack, commands.Basic.Ack) and ack.delivery_tag == 2


def test_a_failed_fsync_nacks_the_held_confirms() -> None:
    broker = Broker()
    session = _open(broker, hold=True)
    _durable_puts(broker)
    _publish(session, b"one")
    broker.durability.fail(StorageError("disk on fire"))
    [nack] = split_frames(session.data_to_send())
    assert isinstance(nack, commands.Basic.Nack) and nack.delivery_tag == 1


def test_without_group_commit_confirms_go_at_once() -> None:
    broker = Broker()
    session = _open(broker, hold=False)
    _durable_puts(broker)
    _publish(session, b"one")
    [ack] = split_frames(session.data_to_send())
    assert isinstance(ack, commands.Basic.Ack)


def test_exclusive_queues_are_gone_before_close_ok() -> None:
    broker = Broker()
    session = _open(broker, hold=False)
    session.receive_data(frame.marshal(commands.Queue.Declare(queue="mine", exclusive=True), 1))
    session.data_to_send()
    session.receive_data(frame.marshal(commands.Connection.Close(200, "bye", 0, 0), 0))
    [close_ok] = split_frames(session.data_to_send())
    assert isinstance(close_ok, commands.Connection.CloseOk)
    assert broker.namespace().queues.find("mine") is None  # already, not at socket close


def _begin_publish(channel: int, size: int) -> bytes:
    return frame.marshal(commands.Basic.Publish(exchange="", routing_key="q"), channel) + (
        frame.marshal(header.ContentHeader(0, size, commands.Basic.Properties()), channel)
    )


def test_bodies_in_progress_are_bounded_per_connection() -> None:
    broker = Broker()
    session = _open(broker, hold=False, content_budget=1000)
    session.receive_data(frame.marshal(commands.Channel.Open(), 2))
    session.data_to_send()
    # One 600-byte body completes and frees its share of the budget ...
    session.receive_data(_begin_publish(1, 600) + frame.marshal(body.ContentBody(b"x" * 600), 1))
    session.receive_data(_begin_publish(1, 600))  # ... this one stays half-sent
    assert session.closing is None
    session.receive_data(_begin_publish(2, 600))  # 1,200 bytes would be in progress
    frames = split_frames(session.data_to_send())
    assert isinstance(frames[-1], commands.Connection.Close) and frames[-1].reply_code == 530


def test_pending_input_is_the_next_frames_declared_size() -> None:
    broker = Broker()
    session = AmqpSession(broker, 1, AmqpSettings(authenticate=lambda token: object()))
    session.receive_data(b"AMQP\x00\x00\x09")  # 7 bytes of the header: no frame prefix
    assert session.pending_input_bytes == 7
    session = _open(broker, hold=False)
    publish = frame.marshal(commands.Basic.Publish(exchange="", routing_key="q"), 1)
    session.receive_data(publish[:10])
    assert (session.pending_input_bytes, session.buffered_input_bytes) == (len(publish), 10)
    session.discard_input()
    assert session.buffered_input_bytes == 0


def _connection_close(session: AmqpSession) -> commands.Connection.Close:
    sent = split_frames(session.data_to_send())
    closes = [f for f in sent if isinstance(f, commands.Connection.Close)]
    assert len(closes) == 1
    return closes[0]


def test_an_unknown_frame_type_is_a_frame_error_on_any_channel() -> None:
    # Type 9 on channel 0 used to be called a "content frame" (505), and on an
    # unopened channel a channel error (504): the spec's answer is 501.
    for channel in (0, 1, 7):
        session = _open(Broker(), hold=False)
        session.receive_data(b"\x09" + channel.to_bytes(2, "big") + b"\x00\x00\x00\x00\xce")
        close = _connection_close(session)
        assert (close.reply_code, close.reply_text) == (501, "FRAME_ERROR - unknown frame type 9")


def test_channel_open_on_channel_0_is_a_channel_error_not_an_unimplemented_one() -> None:
    # RabbitMQ's 504, as for every non-connection method on channel 0.
    session = _open(Broker(), hold=False)
    session.receive_data(frame.marshal(commands.Channel.Open(), 0))
    close = _connection_close(session)
    assert close.reply_code == 504
    assert close.reply_text == "CHANNEL_ERROR - unexpected Channel.Open on channel 0"


def _transactional(session: AmqpSession) -> None:
    session.receive_data(
        frame.marshal(commands.Channel.Open(), 2) + frame.marshal(commands.Tx.Select(), 2)
    )
    session.data_to_send()


def _publish_on(session: AmqpSession, channel: int, payload: bytes) -> None:
    session.receive_data(publish_frames(payload, channel))


def test_a_commit_of_durable_writes_is_answered_after_the_group_commit() -> None:
    broker = Broker()
    session = _open(broker, hold=True)
    _durable_puts(broker)
    _transactional(session)
    _publish_on(session, 2, b"one")
    session.receive_data(frame.marshal(commands.Tx.Commit(), 2))
    assert split_frames(session.data_to_send()) == []  # not before the fsync
    broker.durability.release(broker.durability.generation)
    [commit_ok] = split_frames(session.data_to_send())
    assert isinstance(commit_ok, commands.Tx.CommitOk)


def test_a_commit_whose_fsync_fails_closes_its_channel() -> None:
    broker = Broker()
    session = _open(broker, hold=True)
    _durable_puts(broker)
    _transactional(session)
    _publish_on(session, 2, b"one")
    session.receive_data(frame.marshal(commands.Tx.Commit(), 2))
    broker.durability.fail(StorageError("disk on fire"))
    [close] = split_frames(session.data_to_send())
    assert isinstance(close, commands.Channel.Close) and close.reply_code == 406
    assert "could not be made durable" in close.reply_text


#: Methods that write durable state (with a data directory), and their answers.
_DURABLE_DECLARATIONS = [
    (
        commands.Exchange.Declare(exchange="x", exchange_type="direct", durable=True),
        commands.Exchange.DeclareOk,
    ),
    (commands.Queue.Declare(queue="kept", durable=True), commands.Queue.DeclareOk),
    (commands.Queue.Bind(queue="kept", exchange="x", routing_key="k"), commands.Queue.BindOk),
    (
        commands.Exchange.Declare(exchange="y", exchange_type="fanout", durable=True),
        commands.Exchange.DeclareOk,
    ),
    (
        commands.Exchange.Bind(destination="y", source="x", routing_key="k"),
        commands.Exchange.BindOk,
    ),
]


def _synced_session(broker: Broker) -> AmqpSession:
    """A session whose setup (queue "q", durable) is already on disk and answered."""
    session = _open(broker, hold=True)
    broker.durability.sync()
    session.data_to_send()
    return session


def test_declarations_of_durable_objects_are_answered_after_the_group_commit(
    tmp_path: Path,
) -> None:
    broker = Broker(storage=DataDirectory(tmp_path))
    session = _synced_session(broker)
    for method, answer in _DURABLE_DECLARATIONS:
        session.receive_data(frame.marshal(method, 1))
        # Written to the state journal, not yet fsynced: a crash now would
        # lose it, so the client must not hear that it succeeded.
        assert split_frames(session.data_to_send()) == [], method.name
        broker.durability.sync()
        [reply] = split_frames(session.data_to_send())
        assert isinstance(reply, answer), method.name
    broker.close()


def test_later_answers_wait_behind_a_held_declaration(tmp_path: Path) -> None:
    broker = Broker(storage=DataDirectory(tmp_path))
    session = _synced_session(broker)
    session.receive_data(
        frame.marshal(commands.Queue.Declare(queue="kept", durable=True), 1)
        + frame.marshal(commands.Queue.Declare(queue="memo"), 1)  # writes nothing
    )
    assert split_frames(session.data_to_send()) == []
    broker.durability.sync()
    first, second = split_frames(session.data_to_send())
    assert (first.queue, second.queue) == ("kept", "memo")
    broker.close()


def test_a_declaration_whose_fsync_fails_closes_the_connection(tmp_path: Path) -> None:
    broker = Broker(storage=DataDirectory(tmp_path))
    session = _synced_session(broker)
    session.receive_data(frame.marshal(commands.Queue.Declare(queue="kept", durable=True), 1))
    broker.durability.fail(StorageError("disk on fire"))
    [close] = split_frames(session.data_to_send())
    assert isinstance(close, commands.Connection.Close) and close.reply_code == 541
    assert session.closing is not None
    broker.close()


def test_declarations_of_transient_objects_are_answered_at_once(tmp_path: Path) -> None:
    broker = Broker(storage=DataDirectory(tmp_path))
    session = _synced_session(broker)
    session.receive_data(
        frame.marshal(commands.Exchange.Declare(exchange="t", exchange_type="direct"), 1)
        + frame.marshal(commands.Queue.Declare(queue="memo"), 1)
        + frame.marshal(commands.Queue.Bind(queue="memo", exchange="t", routing_key="k"), 1)
    )
    replies = split_frames(session.data_to_send())
    assert [type(r) for r in replies] == [
        commands.Exchange.DeclareOk,
        commands.Queue.DeclareOk,
        commands.Queue.BindOk,
    ]
    broker.close()


def test_an_exclusive_durable_queue_left_by_a_crash_is_deleted_at_start_up(
    tmp_path: Path,
) -> None:
    broker = Broker(storage=DataDirectory(tmp_path))
    session = _open(broker, hold=False)
    session.receive_data(
        frame.marshal(commands.Queue.Declare(queue="mine", durable=True, exclusive=True), 1)
    )
    session.data_to_send()
    broker.sync_storage()
    broker.close()  # a crash: the connection never closed, the queue is on disk

    broker = Broker(storage=DataDirectory(tmp_path))
    namespace = broker.namespace()
    assert namespace.queues.find("mine") is not None  # the core recovered it
    recover_vhosts([namespace])
    assert namespace.queues.find("mine") is None
    assert namespace.queues.find("q") is not None  # the other durable queue stays


def _consumer(broker: Broker, conn_id: int, prefetch: int) -> AmqpSession:
    session = AmqpSession(broker, conn_id, AmqpSettings(authenticate=lambda token: object()))
    session.receive_data(b"AMQP\x00\x00\x09\x01")
    session.receive_data(
        frame.marshal(commands.Connection.StartOk({}, "PLAIN", "\0u\0p"), 0)
        + frame.marshal(commands.Connection.TuneOk(2047, 131072, 0), 0)
        + frame.marshal(commands.Connection.Open("/"), 0)
        + frame.marshal(commands.Channel.Open(), 1)
        + frame.marshal(commands.Basic.Qos(prefetch_count=prefetch), 1)
        + frame.marshal(commands.Basic.Consume(queue="q", consumer_tag="c"), 1)
    )
    session.data_to_send()
    return session


def test_a_chunk_of_publishes_is_fed_to_the_consumer_in_one_fetch() -> None:
    broker = Broker()
    publisher = _open(broker, hold=False)
    consumer = _consumer(broker, 2, prefetch=5)
    queue = broker.namespace().queues.get("q")
    fetched: list[int] = []
    fetch = queue.fetch

    def counting_fetch(*args: Any, **kwargs: Any) -> Any:
        messages = fetch(*args, **kwargs)
        fetched.append(len(messages))
        return messages

    queue.fetch = counting_fetch  # type: ignore[method-assign]
    publisher.receive_data(b"".join(publish_frames(b"m%d" % i) for i in range(8)))
    assert fetched == [5]  # once, up to the prefetch, after the whole chunk
    frames = split_frames(consumer.data_to_send())
    delivers = [f for f in frames if isinstance(f, commands.Basic.Deliver)]
    assert [d.delivery_tag for d in delivers] == [1, 2, 3, 4, 5]
    assert [f.value for f in frames if isinstance(f, body.ContentBody)] == [
        b"m0",
        b"m1",
        b"m2",
        b"m3",
        b"m4",
    ]
    consumer.receive_data(frame.marshal(commands.Basic.Ack(5, multiple=True), 1))
    assert fetched == [5, 3]
    assert [
        f.value for f in split_frames(consumer.data_to_send()) if isinstance(f, body.ContentBody)
    ] == [
        b"m5",
        b"m6",
        b"m7",
    ]


@pytest.mark.parametrize("no_ack", [False, True])
def test_a_consumer_that_does_not_read_is_fed_no_more_than_its_buffer_takes(
    no_ack: bool,
) -> None:
    """With no prefetch limit (or no_ack), one fetch could hand a consumer
    PULL_BATCH messages: 40 of 100 kB went into the buffer of a client that
    never read, the whole queue moved into that connection's memory. A
    fetch is bounded by the room below the outbound high-water mark (the
    first message goes whatever its size); the rest follow as it drains."""
    broker = Broker()
    publisher = _open(broker, hold=False)
    consumer = AmqpSession(broker, 2, AmqpSettings(authenticate=lambda token: object()))
    consumer.receive_data(b"AMQP\x00\x00\x09\x01")
    consumer.receive_data(
        frame.marshal(commands.Connection.StartOk({}, "PLAIN", "\0u\0p"), 0)
        + frame.marshal(commands.Connection.TuneOk(2047, 131072, 0), 0)
        + frame.marshal(commands.Connection.Open("/"), 0)
        + frame.marshal(commands.Channel.Open(), 1)
        + frame.marshal(commands.Basic.Consume(queue="q", consumer_tag="c", no_ack=no_ack), 1)
    )
    consumer.data_to_send()
    size, count = 100_000, 40
    publisher.receive_data(b"".join(publish_frames(bytes([i]) * size) for i in range(count)))
    high_water = consumer.settings.outbound_high_water
    assert broker.namespace().queues.get("q").ready_count > count // 2  # waiting there
    received: list[bytes] = []
    while len(received) < count:
        out = consumer.data_to_send()  # drained: the next batch is fetched
        assert out, f"stalled after {len(received)} messages"
        assert len(out) <= high_water + size + 1024
        received += [f.value for f in split_frames(out) if isinstance(f, body.ContentBody)]
    assert received == [bytes([i]) * size for i in range(count)]


@pytest.mark.parametrize("expiration", ["\u00b2", "\u0663", "1\u00b2", "-1", "1e3"])
def test_an_expiration_of_anything_but_ascii_digits_closes_the_channel_406(
    expiration: str,
) -> None:
    """ "²" passed str.isdigit() and then failed int(): the connection was
    closed with 541 INTERNAL_ERROR and a traceback logged; "٣" was read as 3."""
    broker = Broker()
    session = _open(broker, hold=False)
    payload = b"x"
    session.receive_data(
        frame.marshal(commands.Basic.Publish(exchange="", routing_key="q"), 1)
        + frame.marshal(
            header.ContentHeader(0, 1, commands.Basic.Properties(expiration=expiration)), 1
        )
        + frame.marshal(body.ContentBody(payload), 1)
    )
    [close] = split_frames(session.data_to_send())
    assert isinstance(close, commands.Channel.Close), close
    assert close.reply_code == 406
    assert broker.namespace().queues.get("q").ready_count == 0


@pytest.mark.parametrize(
    ("vhost", "opens"), [("a b", False), ("%2f", False), ("ok.v-1_", True), ("/", True)]
)
def test_a_vhost_must_be_a_valid_namespace_name(vhost: str, opens: bool) -> None:
    """docs/amqp.md: a valid namespace name opens, any other is 530 NOT_ALLOWED."""
    session = AmqpSession(Broker(), 1, AmqpSettings(authenticate=lambda token: object()))
    session.receive_data(b"AMQP\x00\x00\x09\x01")
    session.receive_data(
        frame.marshal(commands.Connection.StartOk({}, "PLAIN", "\0u\0p"), 0)
        + frame.marshal(commands.Connection.TuneOk(2047, 131072, 0), 0)
        + frame.marshal(commands.Connection.Open(vhost), 0)
    )
    last = split_frames(session.data_to_send())[-1]
    if opens:
        assert isinstance(last, commands.Connection.OpenOk)
    else:
        assert isinstance(last, commands.Connection.Close) and last.reply_code == 530
        assert "may only contain" in last.reply_text


def test_a_consumer_gets_no_more_deliveries_after_its_clients_eof() -> None:
    """After EOF (``eof_received``) a client can no longer ack: what is
    published to its queue stays ready for other consumers, and nothing keeps
    its connection sending until the close deadline (issue 14)."""
    broker = Broker()
    publisher = _open(broker, hold=False)
    consumer = _consumer(broker, 2, prefetch=0)
    publisher.receive_data(publish_frames(b"before"))
    frames = split_frames(consumer.data_to_send())
    assert [f.value for f in frames if isinstance(f, body.ContentBody)] == [b"before"]
    consumer.eof_received()
    publisher.receive_data(b"".join(publish_frames(b"after%d" % i) for i in range(3)))
    assert not consumer.has_output()
    assert consumer.data_to_send() == b""
    assert broker.namespace().queues.get("q").ready_count == 3


def test_a_connection_closing_on_an_error_gets_no_more_deliveries() -> None:
    """Between its Connection.Close (here: for a bad frame) and the socket's
    close, a connection's consumers get no credit: what is published meanwhile
    stays ready for others instead of going out after the Close (issue 14)."""
    broker = Broker()
    publisher = _open(broker, hold=False)
    consumer = _consumer(broker, 2, prefetch=0)
    consumer.receive_data(b"\x09\x00\x00\x00\x00\x00\x00\xce")  # unknown frame type 9
    [close] = split_frames(consumer.data_to_send())
    assert isinstance(close, commands.Connection.Close) and close.reply_code == 501
    publisher.receive_data(b"".join(publish_frames(b"after%d" % i) for i in range(3)))
    assert consumer.data_to_send() == b""
    assert broker.namespace().queues.get("q").ready_count == 3


def test_a_closing_connection_gets_no_direct_replies() -> None:
    broker = Broker()
    requester = _open(broker, hold=False)
    requester.receive_data(
        frame.marshal(commands.Channel.Open(), 2)
        + frame.marshal(
            commands.Basic.Consume(queue="amq.rabbitmq.reply-to", consumer_tag="r", no_ack=True), 2
        )
        + frame.marshal(commands.Basic.Publish(exchange="", routing_key="q"), 2)
        + frame.marshal(
            header.ContentHeader(0, 3, commands.Basic.Properties(reply_to="amq.rabbitmq.reply-to")),
            2,
        )
        + frame.marshal(body.ContentBody(b"req"), 2)
    )
    requester.data_to_send()
    server = _open(broker, hold=False)
    server.receive_data(frame.marshal(commands.Basic.Get(queue="q", no_ack=True), 1))
    _, content_header, _ = split_frames(server.data_to_send())
    reply_to = content_header.properties.reply_to
    requester.kick(StorageError("gone"))
    assert isinstance(split_frames(requester.data_to_send())[0], commands.Connection.Close)
    server.receive_data(
        frame.marshal(commands.Basic.Publish(exchange="", routing_key=reply_to), 1)
        + frame.marshal(header.ContentHeader(0, 5, commands.Basic.Properties()), 1)
        + frame.marshal(body.ContentBody(b"reply"), 1)
    )
    assert requester.data_to_send() == b""


def test_direct_replies_to_a_requester_that_does_not_read_are_bounded() -> None:
    """A reply is written past the high-water mark, but 200 MiB of replies to
    a requester that stopped reading were all buffered (measured from
    outside). Past max_content_in_progress of unsent output a reply is
    dropped, and a mandatory one comes back to its publisher as NO_ROUTE."""
    broker = Broker()
    requester = _open(broker, hold=False, content_budget=1 << 20)
    requester.receive_data(
        frame.marshal(commands.Channel.Open(), 2)
        + frame.marshal(
            commands.Basic.Consume(queue="amq.rabbitmq.reply-to", consumer_tag="r", no_ack=True), 2
        )
        + frame.marshal(commands.Basic.Publish(exchange="", routing_key="q"), 2)
        + frame.marshal(
            header.ContentHeader(0, 3, commands.Basic.Properties(reply_to="amq.rabbitmq.reply-to")),
            2,
        )
        + frame.marshal(body.ContentBody(b"req"), 2)
    )
    requester.data_to_send()
    server = _open(broker, hold=False)
    server.receive_data(frame.marshal(commands.Basic.Get(queue="q", no_ack=True), 1))
    _, content_header, _ = split_frames(server.data_to_send())
    reply_to = content_header.properties.reply_to
    size = 100_000
    reply = (
        frame.marshal(commands.Basic.Publish(exchange="", routing_key=reply_to, mandatory=True), 1)
        + frame.marshal(header.ContentHeader(0, size, commands.Basic.Properties()), 1)
        + frame.marshal(body.ContentBody(b"r" * size), 1)
    )
    returned = []
    for _ in range(30):  # 3 MB of replies; the requester reads none
        server.receive_data(reply)
        returned += [
            f for f in split_frames(server.data_to_send()) if isinstance(f, commands.Basic.Return)
        ]
    pending = requester.data_to_send()
    assert len(pending) <= (1 << 20) + size + 1024
    delivered = [f for f in split_frames(pending) if isinstance(f, commands.Basic.Deliver)]
    assert len(delivered) + len(returned) == 30
    assert returned and all(r.reply_code == 312 for r in returned)
    server.receive_data(reply)  # read now: replies go through again
    assert not any(
        isinstance(f, commands.Basic.Return) for f in split_frames(server.data_to_send())
    )
    assert any(
        isinstance(f, commands.Basic.Deliver) for f in split_frames(requester.data_to_send())
    )


def test_publishes_cut_at_every_byte_arrive_whole() -> None:
    broker = Broker()
    publisher = _open(broker, hold=False)
    consumer = _consumer(broker, 2, prefetch=0)
    data = b"".join(publish_frames(b"x" * 300 + b"%d" % i) for i in range(3))
    for i in range(len(data)):
        publisher.receive_data(data[i : i + 1])
    frames = split_frames(consumer.data_to_send())
    assert [f.value for f in frames if isinstance(f, body.ContentBody)] == [
        b"x" * 300 + b"0",
        b"x" * 300 + b"1",
        b"x" * 300 + b"2",
    ]


def test_a_plain_default_exchange_publish_is_rebuilt_exactly_from_the_core() -> None:
    from minibroker.amqp.messages import NO_PROPERTIES, from_core, to_core

    stored = to_core("", "q", NO_PROPERTIES, None, b"body")
    assert stored.headers is None  # nothing to keep: the queue names the routing key
    assert from_core(stored.headers, "q") == ("", "q", NO_PROPERTIES)
    raw = commands.Basic.Properties(content_type="text/plain").marshal()
    first, second = to_core("ex", "k", raw, {}, b"1"), to_core("ex", "k", raw, None, b"2")
    assert first.headers is second.headers  # shared, not one map per message
    assert from_core(first.headers, "q") == ("ex", "k", raw)


def _confirms(data: bytes) -> list[tuple[str, int, bool]]:
    return [
        (type(f).__name__, f.delivery_tag, f.multiple)
        for f in split_frames(data)
        if isinstance(f, commands.Basic.Ack | commands.Basic.Nack)
    ]


def test_confirms_ready_together_go_as_one_multiple_ack() -> None:
    """As RabbitMQ: one Basic.Ack multiple=True for every confirm ready in the same pass."""
    session = _open(Broker(), hold=False)
    session.receive_data(publish_frames(b"1") + publish_frames(b"2") + publish_frames(b"3"))
    assert _confirms(session.data_to_send()) == [("Ack", 3, True)]
    _publish(session, b"4")  # a pass of its own: a plain ack
    assert _confirms(session.data_to_send()) == [("Ack", 4, False)]


def test_a_nack_ends_a_run_of_coalesced_acks() -> None:
    session = _open(Broker(), hold=False)
    session.receive_data(
        frame.marshal(
            commands.Queue.Declare(
                queue="full", arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
            ),
            1,
        )
    )
    session.data_to_send()
    session.receive_data(
        publish_frames(b"1")
        + publish_frames(b"2")
        + publish_frames(b"x", routing_key="full")
        + publish_frames(b"4")
        + publish_frames(b"5")
    )
    # multiple=True on 5 covers only what is still outstanding: 4 and 5.
    assert _confirms(session.data_to_send()) == [
        ("Ack", 2, True),
        ("Nack", 3, False),
        ("Ack", 5, True),
    ]


def test_other_frames_between_confirms_keep_their_place() -> None:
    """A mandatory publish with no route is returned before its own ack, never
    moved behind a later confirm."""
    session = _open(Broker(), hold=False)
    unroutable = (
        frame.marshal(commands.Basic.Publish(exchange="", routing_key="nowhere", mandatory=True), 1)
        + frame.marshal(header.ContentHeader(0, 1, commands.Basic.Properties()), 1)
        + frame.marshal(body.ContentBody(b"r"), 1)
    )
    session.receive_data(publish_frames(b"1") + unroutable + publish_frames(b"3"))
    kinds = [
        (type(f).__name__, getattr(f, "delivery_tag", None), getattr(f, "multiple", None))
        for f in split_frames(session.data_to_send())
        if not isinstance(f, header.ContentHeader | body.ContentBody)
    ]
    assert kinds == [("Ack", 1, False), ("Return", None, None), ("Ack", 3, True)]
