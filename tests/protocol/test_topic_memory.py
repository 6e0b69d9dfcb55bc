"""A topic subscriber that never reads costs its byte bound, not what was published.

The issue this guards against: a subscription of ``buffer=1,000,000`` that
never read added 3.1 GB in 8 s of 16 KiB messages, because only the count
was bounded. Here the subscriber's connection is never drained at all, the
worst case (a real connection also stops at its outbound high-water mark).
"""

from __future__ import annotations

import tracemalloc

import pytest

from minibroker.core.topics import DEFAULT_BUFFER_BYTES
from tests.protocol.helpers import Net

KiB = 1024
MiB = 1024 * KiB


@pytest.mark.usefixtures("traced_memory")
def test_a_never_reading_subscriber_with_big_messages_stays_within_the_bound() -> None:
    net = Net()
    subscriber = net.connect()
    sub_id = subscriber.call("subscribe", pattern="big", buffer=1_000_000)["sub"]
    publisher = net.connect()
    body = b"x" * (16 * KiB)
    batch = [{"body": body}] * 100
    # The first publish also grows the (shared, reused) msgpack packer's buffer.
    publisher.call("publish", topic="other", messages=batch)
    before, _ = tracemalloc.get_traced_memory()
    batches = 2 * DEFAULT_BUFFER_BYTES // (100 * len(body))
    for _ in range(batches):
        publisher.call("publish", topic="big", messages=batch)
    after, _ = tracemalloc.get_traced_memory()

    source = subscriber.session.subscriptions[sub_id]
    assert source.held_bytes <= DEFAULT_BUFFER_BYTES
    assert after - before < DEFAULT_BUFFER_BYTES + MiB  # 32 MiB were published
    kept = DEFAULT_BUFFER_BYTES // source.items[0].size
    assert len(source.items) == kept

    # When it reads again it is told what it lost, then gets the newest.
    notice, first = subscriber.pump()[:2]
    assert notice == {"op": "notice", "sub": sub_id, "dropped": batches * 100 - kept}
    assert first["op"] == "msg"


def test_buffer_bytes_is_a_subscribe_option() -> None:
    client = Net().connect()
    sub_id = client.call("subscribe", pattern="t", buffer_bytes=3000)["sub"]
    assert client.session.subscriptions[sub_id].buffer_bytes == 3000  # type: ignore[attr-defined]
    error = client.error("subscribe", pattern="t", buffer_bytes=64 * MiB + 1)
    assert error.code == "bad_request"
    assert "buffer_bytes" in error.message
