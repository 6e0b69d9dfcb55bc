"""The null responder of benchmarks/kafka_null_broker.py serves the harness's client.

It stands in for "a broker costing nothing" in ``benchmarks.kafka_phases``; if
it stopped answering what confluent-kafka asks (or answered wrongly), that
figure would be of a broken run. Each record must come back once, in order,
with the harness's own producer and consumer settings.
"""

from __future__ import annotations

import socket
import threading
import time

from benchmarks.kafka_null_broker import NullBroker
from benchmarks.kafka_phases import append
from benchmarks.targets.kafka import REPLAY_BATCH, _consumer_config, _create_topic

from .wire_helpers import frame


def test_the_harness_client_appends_and_replays_through_the_null_broker() -> None:
    from confluent_kafka import Consumer, TopicPartition

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = threading.Thread(target=NullBroker("127.0.0.1", port).serve, args=(listener,))
    server.start()
    bootstrap = f"127.0.0.1:{port}"
    bodies = [b"record-%05d" % i for i in range(25_000)]
    try:
        _create_topic(bootstrap, "phases")
        append(bootstrap, "phases", bodies[:12_000])
        append(bootstrap, "phases", bodies[12_000:])
        consumer = Consumer(_consumer_config(bootstrap, "replay"))
        consumer.assign([TopicPartition("phases", 0, 10_000)])
        got: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 60  # only fails a broken run, never paces it
        while len(got) < len(bodies) - 10_000:
            assert time.monotonic() < deadline, f"replayed {len(got)} records"
            for msg in consumer.consume(num_messages=REPLAY_BATCH, timeout=1.0):
                assert msg.error() is None
                got.append((msg.offset(), msg.value()))
        consumer.close()
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        listener.close()
        server.join(10)
    assert not server.is_alive()
    assert got == list(enumerate(bodies))[10_000:]


def test_a_client_gone_before_its_answer_ends_the_connection_quietly() -> None:
    """A client may close while its answer is on the way (a consumer closing
    mid-fetch does): the connection's thread ends, raising nothing; an
    exception there reached pytest as an unhandled thread exception."""
    server_side, client_side = socket.socketpair()
    client_side.sendall(frame(18, 0, b""))  # ApiVersions v0: an answer is owed
    client_side.close()
    NullBroker("127.0.0.1", 0).serve_connection(server_side)  # must not raise
    assert server_side.fileno() == -1
