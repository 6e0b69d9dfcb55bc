"""The hand-written hot-path codec agrees with pamqp, byte for byte, on any input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands, frame

from minibroker.amqp import framing

names = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=" "), max_size=60
).filter(lambda s: commands.constants.DOMAIN_REGEX["exchange-name"].fullmatch(s) is not None)
keys = st.text(max_size=80).filter(lambda s: len(s.encode()) <= 255)
channels = st.integers(1, 2047)
tags = st.integers(1, 2**63 - 1)  # pamqp encodes long-longs signed


@given(channels, st.text(max_size=40), tags, st.booleans(), names, keys)
def test_deliver_frame_is_pamqps(
    channel: int, consumer_tag: str, tag: int, redelivered: bool, exchange: str, key: str
) -> None:
    expected = frame.marshal(
        commands.Basic.Deliver(consumer_tag, tag, redelivered, exchange, key), channel
    )
    assert framing.deliver_frame(channel, consumer_tag, tag, redelivered, exchange, key) == expected


@given(channels, tags, st.booleans())
def test_confirm_frame_is_pamqps(channel: int, tag: int, ok: bool) -> None:
    # A server's nack has requeue=false, as RabbitMQ sends it (requeue means nothing there).
    method = commands.Basic.Ack(tag) if ok else commands.Basic.Nack(tag, requeue=False)
    assert framing.confirm_frame(channel, tag, ok) == frame.marshal(method, channel)


@given(names, keys, st.booleans(), st.booleans())
def test_publish_decodes_as_pamqp_does(
    exchange: str, key: str, mandatory: bool, immediate: bool
) -> None:
    data = frame.marshal(commands.Basic.Publish(0, exchange, key, mandatory, immediate), 1)
    method = framing.decode_method(data[7:-1])
    assert isinstance(method, commands.Basic.Publish)
    assert (method.exchange, method.routing_key, method.mandatory, method.immediate) == (
        exchange,
        key,
        mandatory,
        immediate,
    )


@given(tags, st.booleans())
def test_ack_decodes_as_pamqp_does(tag: int, multiple: bool) -> None:
    data = frame.marshal(commands.Basic.Ack(tag, multiple), 1)
    method = framing.decode_method(data[7:-1])
    assert isinstance(method, commands.Basic.Ack)
    assert (method.delivery_tag, method.multiple) == (tag, multiple)


def test_a_truncated_publish_is_a_syntax_error_not_a_crash() -> None:
    payload = frame.marshal(commands.Basic.Publish(0, "ex", "key"), 1)[7:-1]
    for cut in range(4, len(payload)):
        try:
            framing.decode_method(payload[:cut])
        except framing.HardError as exc:
            assert exc.code == 502
