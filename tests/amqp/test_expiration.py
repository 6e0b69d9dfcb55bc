"""``expiration: "0"``: delivered to a consumer ready at once, else expired (sans-I/O).

RabbitMQ's rule for a zero TTL. It used to count as one millisecond, then as
one nanosecond, so a basic.get in the same input still got the message.
"""

from __future__ import annotations

from amqp_wire import split_frames
from pamqp import body, commands, frame, header
from test_amqp_session import _open

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
    replies = split_frames(session.data_to_send())
    assert [type(r) for r in replies] == [commands.Basic.GetEmpty]


def test_a_zero_expiration_is_gone_for_a_get_in_the_same_chunk() -> None:
    """RabbitMQ expires it on arrival unless a consumer takes it then; it used
    to live for one nanosecond, so a get in the same input got it."""
    broker = Broker()
    session = _open(broker, hold=False)
    session.receive_data(
        frame.marshal(commands.Queue.Declare(queue="dead"), 1)
        + frame.marshal(
            commands.Queue.Declare(
                queue="src",
                arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"},
            ),
            1,
        ),
        NOW,
    )
    session.data_to_send()
    properties = commands.Basic.Properties(expiration="0")
    session.receive_data(
        frame.marshal(commands.Basic.Publish(exchange="", routing_key="src"), 1)
        + frame.marshal(header.ContentHeader(0, 3, properties), 1)
        + frame.marshal(body.ContentBody(b"now"), 1)
        + frame.marshal(commands.Basic.Get(queue="src", no_ack=True), 1),
        NOW,
    )
    replies = split_frames(session.data_to_send())
    assert [type(r) for r in replies if not isinstance(r, commands.Basic.Ack)] == [
        commands.Basic.GetEmpty
    ]
    got = _get(session, "dead")  # dead-lettered at once, with no expiration
    [content] = [f for f in got if isinstance(f, header.ContentHeader)]
    assert content.properties.expiration is None
    [death] = content.properties.headers["x-death"]
    assert (death["reason"], death["original-expiration"]) == ("expired", "0")


def test_a_zero_expiration_reaches_a_consumer_that_is_ready() -> None:
    session = _open(Broker(), hold=False)
    session.receive_data(
        frame.marshal(commands.Basic.Consume(queue="q", consumer_tag="c", no_ack=True), 1), NOW
    )
    session.data_to_send()
    _publish_expiring_now(session, NOW)
    delivered = [f for f in split_frames(session.data_to_send()) if isinstance(f, body.ContentBody)]
    assert [d.value for d in delivered] == [b"now"]


# ``x-message-ttl: 0`` on the queue: the same rule for every message (it used
# to count as one millisecond, the core's shortest TTL then).


def _declare_now_or_never(session: object) -> None:
    session.receive_data(  # type: ignore[attr-defined]
        frame.marshal(commands.Queue.Declare(queue="dead"), 1)
        + frame.marshal(
            commands.Queue.Declare(
                queue="z",
                arguments={
                    "x-message-ttl": 0,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": "dead",
                },
            ),
            1,
        ),
        NOW,
    )
    session.data_to_send()  # type: ignore[attr-defined]


def _publish_to(session: object, queue: str, payload: bytes) -> None:
    session.receive_data(  # type: ignore[attr-defined]
        frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1)
        + frame.marshal(header.ContentHeader(0, len(payload), commands.Basic.Properties()), 1)
        + frame.marshal(body.ContentBody(payload), 1),
        NOW,
    )


def _get(session: object, queue: str) -> list[object]:
    session.receive_data(  # type: ignore[attr-defined]
        frame.marshal(commands.Basic.Get(queue=queue, no_ack=True), 1), NOW
    )
    return split_frames(session.data_to_send())  # type: ignore[attr-defined]


def test_a_zero_queue_ttl_is_gone_for_a_get_at_the_same_instant() -> None:
    session = _open(Broker(), hold=False)
    _declare_now_or_never(session)
    _publish_to(session, "z", b"m")
    session.data_to_send()
    assert [type(r) for r in _get(session, "z")] == [commands.Basic.GetEmpty]


def test_a_zero_queue_ttl_dead_letters_at_once() -> None:
    broker = Broker()
    session = _open(broker, hold=False)
    _declare_now_or_never(session)
    _publish_to(session, "z", b"m")
    session.data_to_send()
    got = _get(session, "dead")  # no time has passed, no timer has run
    assert [f.value for f in got if isinstance(f, body.ContentBody)] == [b"m"]
    queue = broker.namespace().queues.get("z")
    assert (queue.statistics().expired, queue.ready_count) == (1, 0)


def test_a_zero_queue_ttl_reaches_a_consumer_with_credit_and_no_other() -> None:
    broker = Broker()
    session = _open(broker, hold=False)
    _declare_now_or_never(session)
    session.receive_data(
        frame.marshal(commands.Basic.Qos(prefetch_count=1), 1)
        + frame.marshal(commands.Basic.Consume(queue="z", consumer_tag="c"), 1),
        NOW,
    )
    session.data_to_send()
    # Two publishes in one chunk: the consumer has credit for the first only.
    session.receive_data(
        b"".join(
            frame.marshal(commands.Basic.Publish(exchange="", routing_key="z"), 1)
            + frame.marshal(header.ContentHeader(0, 1, commands.Basic.Properties()), 1)
            + frame.marshal(body.ContentBody(payload), 1)
            for payload in (b"1", b"2")
        ),
        NOW,
    )
    delivered = [f for f in split_frames(session.data_to_send()) if isinstance(f, body.ContentBody)]
    assert [d.value for d in delivered] == [b"1"]
    got = _get(session, "dead")
    assert [f.value for f in got if isinstance(f, body.ContentBody)] == [b"2"]
