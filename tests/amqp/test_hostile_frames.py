"""Frames no client sends, answered as RabbitMQ 3.10 answers them (sans-I/O).

Each case was first sent over a raw socket to the RabbitMQ on 127.0.0.1:5672
and to minibroker side by side; these are the ones where minibroker answered
differently (or not at all) before.
"""

from __future__ import annotations

import struct

from pamqp import commands, frame
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
