"""``expiration: "0"``: delivered to a consumer ready at once, else expired (sans-I/O).

RabbitMQ's rule for a zero TTL. It used to count as one millisecond, so a
basic.get within that millisecond still got the message.
"""

from __future__ import annotations

from pamqp import body, commands, frame, header
from test_amqp_session import _frames, _open

from minibroker.core.broker import Broker

NOW = 1000.0


def _publish_expiring_now(session: object, now: float) -> None:
    properties = commands.Basic.Properties(expiration="0")
    session.receive_data(  # type: ignore[attr-defined]
        frame.marshal(commands.Basic.Publish(exchange="", routing_key="q"), 1)
        + frame.marshal(header.ContentHeader(0, 3, properties), 1)
        + frame.marshal(body.ContentBody(b"now"), 1),
        now,
    )


def test_a_zero_expiration_is_gone_for_a_get_a_moment_later() -> None:
    session = _open(Broker(), hold=False)
    _publish_expiring_now(session, NOW)
    session.data_to_send()
    session.receive_data(frame.marshal(commands.Basic.Get(queue="q", no_ack=True), 1), NOW + 1e-4)
    replies = _frames(session.data_to_send())
    assert [type(r) for r in replies] == [commands.Basic.GetEmpty]


def test_a_zero_expiration_reaches_a_consumer_that_is_ready() -> None:
    session = _open(Broker(), hold=False)
    session.receive_data(
        frame.marshal(commands.Basic.Consume(queue="q", consumer_tag="c", no_ack=True), 1), NOW
    )
    session.data_to_send()
    _publish_expiring_now(session, NOW)
    delivered = [f for f in _frames(session.data_to_send()) if isinstance(f, body.ContentBody)]
    assert [d.value for d in delivered] == [b"now"]
