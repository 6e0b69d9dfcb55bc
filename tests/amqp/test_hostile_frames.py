"""Frames no client sends, answered as RabbitMQ 3.10 answers them (sans-I/O).

Each case was first sent over a raw socket to the RabbitMQ on 127.0.0.1:5672
and to minibroker side by side; these are the ones where minibroker answered
differently (or not at all) before.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from pamqp import body, commands, frame, header
from test_amqp_session import _connection_close, _open

from minibroker.core.broker import Broker


def test_a_heartbeat_frame_with_a_payload_is_a_frame_error() -> None:
    session = _open(Broker(), hold=False)
    session.receive_data(b"\x08\x00\x00\x00\x00\x00\x02xx\xce")
    close = _connection_close(session)
    assert (close.reply_code, close.reply_text) == (
        501,
        "FRAME_ERROR - heartbeat frame with a payload",
    )


def test_a_content_header_of_another_class_is_an_unexpected_frame() -> None:
    session = _open(Broker(), hold=False)
    wrong_class = struct.pack(">HHQH", 50, 0, 3, 0)
    session.receive_data(
        frame.marshal(commands.Basic.Publish(exchange="", routing_key="q"), 1)
        + b"\x02\x00\x01"
        + len(wrong_class).to_bytes(4, "big")
        + wrong_class
        + b"\xce"
    )
    close = _connection_close(session)
    assert (close.reply_code, close.class_id, close.method_id) == (505, 60, 40)
    assert "class 50" in close.reply_text


def test_a_connection_method_on_a_channel_is_an_invalid_command() -> None:
    session = _open(Broker(), hold=False)
    session.receive_data(frame.marshal(commands.Connection.Close(200, "bye", 0, 0), 1))
    close = _connection_close(session)
    assert (close.reply_code, close.class_id, close.method_id) == (503, 10, 50)
    assert close.reply_text == "COMMAND_INVALID - Connection.Close on channel 1, not 0"


_PUBLISH = frame.marshal(commands.Basic.Publish(exchange="", routing_key="q"), 1)
_HEADER = frame.marshal(header.ContentHeader(0, 10, commands.Basic.Properties()), 1)
_QOS = frame.marshal(commands.Basic.Qos(prefetch_count=1), 1)
_NO_HEADER = (
    "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead"
)
_NO_BODY = "UNEXPECTED_FRAME - expected content body, got non content body frame instead"


@pytest.mark.parametrize(
    ("frames", "text"),
    [
        (_PUBLISH + _QOS, _NO_HEADER),
        (_PUBLISH + _PUBLISH, _NO_HEADER),
        (_PUBLISH + frame.marshal(body.ContentBody(b"abc"), 1), _NO_HEADER),
        (_PUBLISH + _HEADER + _QOS, _NO_BODY),
        (_PUBLISH + _HEADER + _PUBLISH, _NO_BODY),
        (_PUBLISH + _HEADER + _HEADER, _NO_BODY),
        (_PUBLISH + _HEADER + frame.marshal(body.ContentBody(b"abc"), 1) + _QOS, _NO_BODY),
        (_PUBLISH + _HEADER + frame.marshal(commands.Channel.Close(200, "", 0, 0), 1), _NO_BODY),
    ],
    ids=[
        "method",
        "publish",
        "body",
        "method after the header",
        "publish after the header",
        "header after the header",
        "method after part of the body",
        "channel.close after the header",
    ],
)
def test_a_publish_interrupted_is_505_naming_the_publish_and_what_was_expected(
    frames: bytes, text: str
) -> None:
    # RabbitMQ names the Basic.Publish (60, 40) whatever frame broke in,
    # and says whether the header or the body was due.
    session = _open(Broker(), hold=False)
    session.receive_data(frames)
    close = _connection_close(session)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        505,
        text,
        60,
        40,
    )


@pytest.mark.parametrize(
    "method",
    [
        commands.Basic.Qos(prefetch_count=1),
        commands.Channel.Open(),
        commands.Connection.TuneOk(2047, 131072, 0),
        commands.Connection.Open("/"),
    ],
    ids=lambda m: m.name,
)
def test_an_unexpected_method_on_channel_0_is_a_channel_error(method: Any) -> None:
    session = _open(Broker(), hold=False)
    session.receive_data(frame.marshal(method, 0))
    close = _connection_close(session)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        504,
        f"CHANNEL_ERROR - unexpected {method.name} on channel 0",
        *divmod(method.index, 1 << 16),
    )


@pytest.mark.parametrize(
    "method",
    [
        commands.Channel.CloseOk(),
        commands.Channel.FlowOk(active=True),
        commands.Basic.GetEmpty(),
        commands.Basic.Deliver("c", 1, False, "", "q"),
        commands.Queue.DeclareOk("q", 0, 0),
    ],
    ids=lambda m: m.name,
)
def test_a_method_only_the_server_sends_is_an_invalid_command(method: Any) -> None:
    # RabbitMQ: 503 COMMAND_INVALID (not 540: nothing is missing from the broker).
    session = _open(Broker(), hold=False)
    session.receive_data(frame.marshal(method, 1))
    close = _connection_close(session)
    assert (close.reply_code, close.class_id, close.method_id) == (
        503,
        *divmod(method.index, 1 << 16),
    )
    assert close.reply_text == f"COMMAND_INVALID - unexpected {method.name} from a client"


@pytest.mark.parametrize(
    "method",
    [
        commands.Basic.Qos(prefetch_count=1),
        commands.Basic.Ack(1),
        commands.Basic.Publish(exchange="", routing_key="q"),
        commands.Queue.Declare(queue="q2"),
    ],
    ids=lambda m: m.name,
)
def test_bytes_after_a_methods_arguments_are_a_syntax_error(method: Any) -> None:
    # RabbitMQ refuses them too (501 "cannot decode"); minibroker says 502
    # as for any other undecodable arguments (docs/amqp.md).
    session = _open(Broker(), hold=False)
    payload = frame.marshal(method, 1)[7:-1] + b"garbage"
    session.receive_data(b"\x01\x00\x01" + struct.pack(">I", len(payload)) + payload + b"\xce")
    close = _connection_close(session)
    assert (close.reply_code, close.class_id, close.method_id) == (
        502,
        *divmod(method.index, 1 << 16),
    )
    assert "7 bytes after the arguments" in close.reply_text


def test_an_unknown_exchange_type_is_503_in_rabbitmqs_words() -> None:
    session = _open(Broker(), hold=False)
    session.receive_data(
        frame.marshal(commands.Exchange.Declare(exchange="d", exchange_type="x-delayed-message"), 1)
    )
    close = _connection_close(session)
    assert (close.reply_code, close.reply_text) == (
        503,
        "COMMAND_INVALID - unknown exchange type 'x-delayed-message'",
    )
