"""The hand-written hot-path codec agrees with pamqp, byte for byte, on any input."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands, frame
from pamqp import header as header_frame

from minibroker.amqp import framing

names = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=" "), max_size=60
).filter(lambda s: commands.constants.DOMAIN_REGEX["exchange-name"].fullmatch(s) is not None)
keys = st.text(max_size=80).filter(lambda s: len(s.encode()) <= 255)
channels = st.integers(1, 2047)
tags = st.integers(1, 2**63 - 1)  # pamqp encodes long-longs signed


property_sets = st.fixed_dictionaries(
    {},
    optional={
        "content_type": st.text(max_size=20),
        "headers": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
        "delivery_mode": st.integers(1, 2),
        "priority": st.integers(0, 9),
        "correlation_id": st.text(max_size=20),
        "reply_to": st.text(max_size=40),
        "expiration": st.integers(0, 10**9).map(str),
        "message_id": st.text(max_size=20),
        "app_id": st.text(max_size=20),
    },
)
bodies = st.one_of(st.binary(max_size=64), st.binary(min_size=5000, max_size=9000))


@given(channels, st.text(max_size=40), tags, st.booleans(), names, keys, property_sets, bodies)
def test_delivery_frames_are_pamqps(
    channel: int,
    consumer_tag: str,
    tag: int,
    redelivered: bool,
    exchange: str,
    key: str,
    fields: dict[str, Any],
    data: bytes,
) -> None:
    properties = commands.Basic.Properties(**fields)
    frame_max = 4096  # bodies over it are split into several body frames
    expected = frame.marshal(
        commands.Basic.Deliver(consumer_tag, tag, redelivered, exchange, key), channel
    ) + framing.content_frames(channel, properties.marshal(), data, frame_max)
    built = framing.delivery_frames(
        channel,
        framing.deliver_method_head(consumer_tag),
        tag,
        redelivered,
        framing.encoded_address(exchange, key),
        properties.marshal(),
        data,
        frame_max,
    )
    assert built == expected
    header = frame.marshal(header_frame.ContentHeader(0, len(data), properties), channel)
    assert header in built  # the content header is pamqp's too


@given(
    channels,
    st.text(max_size=40),
    names,
    keys,
    property_sets,
    st.lists(st.tuples(tags, st.booleans(), bodies), min_size=1, max_size=6),
)
def test_a_delivery_run_is_pamqps_frames(
    channel: int,
    consumer_tag: str,
    exchange: str,
    key: str,
    fields: dict[str, Any],
    deliveries: list[tuple[int, bool, bytes]],
) -> None:
    """DeliveryRun's pieces, joined, are pamqp's frames for each delivery in turn
    (bodies of every size: empty, one frame, several; sizes repeat and change)."""
    properties = commands.Basic.Properties(**fields)
    raw = properties.marshal()
    frame_max = 4096
    run = framing.DeliveryRun(
        channel,
        framing.deliver_method_head(consumer_tag),
        framing.encoded_address(exchange, key),
        raw,
        frame_max,
    )
    out: list[bytes] = []
    expected = b""
    for tag, redelivered, data in deliveries:
        run.add(out, tag, redelivered, data)
        expected += frame.marshal(
            commands.Basic.Deliver(consumer_tag, tag, redelivered, exchange, key), channel
        ) + framing.content_frames(channel, raw, data, frame_max)
    assert b"".join(out) == expected


@given(property_sets)
def test_routing_properties_read_what_pamqp_decodes(fields: dict[str, Any]) -> None:
    raw = commands.Basic.Properties(**fields).marshal()
    found = framing.routing_properties(raw)
    if fields.get("headers"):
        assert found is None  # routing needs the table: pamqp decodes it
        return
    assert found is not None
    decoded = framing.decode_properties(raw)
    assert (found.reply_to, found.expiration) == (decoded.reply_to, decoded.expiration)
    if found.reply_to is not None:
        replaced = framing.decode_properties(
            framing.replace_span(raw, found.reply_to_span, "amq.rabbitmq.reply-to.abc")
        )
        assert replaced.reply_to == "amq.rabbitmq.reply-to.abc"
        for name in fields:
            if name != "reply_to":
                assert getattr(replaced, name) == getattr(decoded, name)


def test_routing_properties_leave_broken_bytes_to_pamqp() -> None:
    raw = commands.Basic.Properties(reply_to="somewhere", expiration="100").marshal()
    for cut in range(2, len(raw)):
        assert framing.routing_properties(raw[:cut]) is None


@given(channels, tags, st.booleans(), st.booleans())
def test_confirm_frame_is_pamqps(channel: int, tag: int, ok: bool, multiple: bool) -> None:
    # A server's nack has requeue=false, as RabbitMQ sends it (requeue means nothing there).
    method = (
        commands.Basic.Ack(tag, multiple)
        if ok
        else commands.Basic.Nack(tag, multiple, requeue=False)
    )
    built = framing.confirm_frame(channel, tag, ok, multiple=multiple)
    assert built == frame.marshal(method, channel)
    # The same size either way: a coalesced confirm replaces the one it extends.
    assert len(built) == len(framing.confirm_frame(channel, tag, ok))


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


@given(names, keys, st.booleans())
def test_the_publish_shortcut_decodes_as_pamqp_does(
    exchange: str, key: str, mandatory: bool
) -> None:
    """The session's shortcut (decode_publish, cached by payload) against pamqp's decoder."""
    payload = frame.marshal(commands.Basic.Publish(0, exchange, key, mandatory), 1)[7:-1]
    expected = commands.Basic.Publish()
    expected.unmarshal(payload[4:])
    for _ in range(2):  # decoded, then found in the cache
        method = framing.decode_publish(payload)
        assert method is not None
        assert (method.exchange, method.routing_key, method.mandatory, method.immediate) == (
            expected.exchange,
            expected.routing_key,
            expected.mandatory,
            expected.immediate,
        )


@given(property_sets, st.integers(0, 2**40))
def test_content_headers_decode_as_pamqp_does(fields: dict[str, Any], size: int) -> None:
    properties = commands.Basic.Properties(**fields)
    data = frame.marshal(header_frame.ContentHeader(0, size, properties), 1)
    _, _, expected = frame.unmarshal(data)
    class_id, body_size, raw = framing.decode_content_header(data[7:-1])
    assert (class_id, body_size) == (60, expected.body_size)
    assert framing.decode_properties(raw) == expected.properties


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
