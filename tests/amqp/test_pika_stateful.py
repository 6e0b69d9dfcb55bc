"""A Hypothesis state machine drives one queue through pika and checks it against a model.

Publish (confirmed), get, ack, nack and reject (with or without requeue),
recover, and closing the channel, in any order. After every step the broker
must agree with a plain model of an AMQP queue as minibroker promises it:
FIFO among ready messages, requeued messages back at their place in
publication order (as RabbitMQ puts them, however and in whatever order they
come back), ``redelivered`` set exactly on messages delivered before,
delivery tags increasing per channel, ``message_count`` exact, nothing lost
and nothing duplicated.
"""

from __future__ import annotations

import bisect
from typing import Any

import pika
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from minibroker.testing import ThreadedBroker, fresh_namespace


class PikaQueueMachine(RuleBasedStateMachine):
    broker: ThreadedBroker

    def __init__(self) -> None:
        super().__init__()
        self.connection: Any = None
        self.channel: Any = None
        self.next_body = 0
        # (publication number, body, delivered before), in publication order:
        # the queue hands out its head and puts every returned message back at
        # its place, so what is ready stays sorted by publication.
        self.ready: list[tuple[int, bytes, bool]] = []
        self.unacked: dict[int, tuple[int, bytes]] = {}  # tag -> (number, body)
        self.last_tag = 0

    @initialize()
    def connect(self) -> None:
        url = self.broker.amqp_url_for(fresh_namespace("stateful"))
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self._open_channel()

    def _open_channel(self) -> None:
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.channel.queue_declare("q")
        self.last_tag = 0

    def teardown(self) -> None:
        if self.connection is not None and self.connection.is_open:
            self.connection.close()

    @rule(count=st.integers(1, 3))
    def publish(self, count: int) -> None:
        for _ in range(count):
            number = self.next_body
            self.next_body += 1
            body = str(number).encode()
            self.channel.basic_publish("", "q", body)
            self.ready.append((number, body, False))

    @rule(auto_ack=st.booleans())
    def get(self, auto_ack: bool) -> None:
        method, _, body = self.channel.basic_get("q", auto_ack=auto_ack)
        if not self.ready:
            assert method is None
            return
        number, expected, delivered_before = self.ready.pop(0)
        assert (body, method.redelivered) == (expected, delivered_before)
        assert method.delivery_tag > self.last_tag
        self.last_tag = method.delivery_tag
        assert method.message_count == len(self.ready)
        if not auto_ack:
            self.unacked[method.delivery_tag] = (number, body)

    @precondition(lambda self: self.unacked)
    @rule(data=st.data(), multiple=st.booleans())
    def ack(self, data: st.DataObject, multiple: bool) -> None:
        tag = data.draw(st.sampled_from(sorted(self.unacked)))
        self.channel.basic_ack(tag, multiple=multiple)
        for t in [t for t in self.unacked if t == tag or (multiple and t <= tag)]:
            del self.unacked[t]

    @precondition(lambda self: self.unacked)
    @rule(data=st.data(), requeue=st.booleans(), reject=st.booleans())
    def give_back(self, data: st.DataObject, requeue: bool, reject: bool) -> None:
        tag = data.draw(st.sampled_from(sorted(self.unacked)))
        if reject:
            self.channel.basic_reject(tag, requeue=requeue)
        else:
            self.channel.basic_nack(tag, multiple=False, requeue=requeue)
        number, body = self.unacked.pop(tag)
        if requeue:
            bisect.insort(self.ready, (number, body, True))

    @rule()
    def recover(self) -> None:
        self.channel.basic_recover(requeue=True)
        self._all_unacked_back()

    @rule()
    def close_channel(self) -> None:
        self.channel.close()
        self._all_unacked_back()
        self._open_channel()

    def _all_unacked_back(self) -> None:
        for number, body in self.unacked.values():
            bisect.insort(self.ready, (number, body, True))
        self.unacked.clear()

    @invariant()
    def counts_agree(self) -> None:
        if self.channel is None:
            return
        declared = self.channel.queue_declare("q", passive=True)
        assert declared.method.message_count == len(self.ready)


def test_a_queue_through_pika_behaves_like_the_model(
    minibroker_amqp_server: ThreadedBroker,
) -> None:
    PikaQueueMachine.broker = minibroker_amqp_server
    run = PikaQueueMachine.TestCase
    run.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)
    run().runTest()
