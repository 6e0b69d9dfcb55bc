"""Which delivery tags a Basic.Ack or Basic.Nack with ``multiple`` settles.

RabbitMQ (rabbit_channel:collect_acks) and the spec: tag 0 with multiple=true
is "everything outstanding", even nothing; any other tag must itself be
outstanding, or the channel closes with 406 and nothing is settled. The
sessions are sans-I/O, on an in-process broker.
"""

from __future__ import annotations

from typing import Any

import pytest
from amqp_wire import publish_frames, split_frames
from pamqp import commands, frame

from minibroker.amqp.connection import AmqpSession, AmqpSettings
from minibroker.core.broker import Broker


def _session(broker: Broker, conn_id: int) -> AmqpSession:
    session = AmqpSession(broker, conn_id, AmqpSettings(authenticate=lambda token: object()))
    session.receive_data(b"AMQP\x00\x00\x09\x01")
    session.receive_data(
        frame.marshal(commands.Connection.StartOk({}, "PLAIN", "\0u\0p"), 0)
        + frame.marshal(commands.Connection.TuneOk(2047, 131072, 0), 0)
        + frame.marshal(commands.Connection.Open("/"), 0)
        + frame.marshal(commands.Channel.Open(), 1)
        + frame.marshal(commands.Queue.Declare(queue="q"), 1)
    )
    session.data_to_send()
    return session


def _delivered(count: int) -> tuple[Broker, AmqpSession]:
    """A broker whose queue "q" has ``count`` messages delivered, unacked, on
    channel 1 of the returned session (tags 1 to ``count``)."""
    broker = Broker()
    session = _session(broker, 1)
    session.receive_data(b"".join(publish_frames(b"m%d" % i) for i in range(count)))
    session.receive_data(frame.marshal(commands.Basic.Consume(queue="q", consumer_tag="c"), 1))
    delivers = [
        f for f in split_frames(session.data_to_send()) if isinstance(f, commands.Basic.Deliver)
    ]
    assert [d.delivery_tag for d in delivers] == list(range(1, count + 1))
    return broker, session


def _answer(session: AmqpSession, *methods: Any) -> Any:
    """The answer to a Basic.Qos sent after ``methods``: QosOk, or the Close before it."""
    session.receive_data(
        b"".join(frame.marshal(m, 1) for m in methods)
        + frame.marshal(commands.Basic.Qos(prefetch_count=0), 1)
    )
    [answer] = [
        f
        for f in split_frames(session.data_to_send())
        if isinstance(f, commands.Basic.QosOk | commands.Channel.Close)
    ]
    return answer


@pytest.mark.parametrize("method", [commands.Basic.Ack, commands.Basic.Nack])
def test_tag_zero_with_multiple_and_nothing_outstanding_settles_nothing(method: Any) -> None:
    _, session = _delivered(0)
    assert isinstance(_answer(session, method(delivery_tag=0, multiple=True)), commands.Basic.QosOk)


def test_tag_zero_with_multiple_acks_everything_outstanding() -> None:
    broker, session = _delivered(3)
    assert isinstance(_answer(session, commands.Basic.Ack(0, multiple=True)), commands.Basic.QosOk)
    session.receive_data(frame.marshal(commands.Channel.Close(200, "", 0, 0), 1))
    assert broker.namespace().queues.get("q").ready_count == 0


@pytest.mark.parametrize("method", [commands.Basic.Ack, commands.Basic.Nack])
def test_multiple_up_to_a_tag_never_delivered_is_406_and_settles_nothing(method: Any) -> None:
    broker, session = _delivered(3)
    close = _answer(session, method(delivery_tag=5, multiple=True))
    assert isinstance(close, commands.Channel.Close)
    assert (close.reply_code, close.reply_text) == (
        406,
        "PRECONDITION_FAILED - unknown delivery tag 5",
    )
    # The channel's close requeued all three: none was settled by the bad ack.
    assert broker.namespace().queues.get("q").ready_count == 3


def test_multiple_up_to_a_tag_already_acked_is_406() -> None:
    broker, session = _delivered(3)
    close = _answer(
        session,
        commands.Basic.Ack(delivery_tag=2),
        commands.Basic.Ack(delivery_tag=2, multiple=True),
    )
    assert isinstance(close, commands.Channel.Close)
    assert (close.reply_code, close.reply_text) == (
        406,
        "PRECONDITION_FAILED - unknown delivery tag 2",
    )
    assert broker.namespace().queues.get("q").ready_count == 2  # 1 and 3 went back


def test_multiple_up_to_an_outstanding_tag_settles_it_and_those_before() -> None:
    broker, session = _delivered(4)
    assert isinstance(
        _answer(session, commands.Basic.Ack(1), commands.Basic.Ack(3, multiple=True)),
        commands.Basic.QosOk,
    )
    session.receive_data(frame.marshal(commands.Channel.Close(200, "", 0, 0), 1))
    assert broker.namespace().queues.get("q").ready_count == 1  # 4 went back
