"""Looking inside: what is ready, in flight and delayed; counters; consumer-group lag.

The inspection calls change nothing, so a test can assert on the broker's
state as well as on what its clients saw.
"""

from __future__ import annotations

import pytest
import trio

import minibroker

pytestmark = pytest.mark.trio


# --- snippet: inspect_queue
async def test_where_every_message_is(
    autojump_clock: trio.testing.MockClock, minibroker_client: minibroker.Client
) -> None:
    mb = minibroker_client
    await mb.declare_queue("jobs", visibility_timeout=30)
    await mb.put_many("jobs", [b"a", b"b", b"c"])
    [a] = await mb.fetch("jobs")
    [b] = await mb.fetch("jobs")
    await b.nack(delay=10)  # back in 10 s

    contents = await mb.inspect_queue("jobs")
    assert [m.body for m in contents.ready] == [b"c"]
    [held] = contents.in_flight
    assert (held.body, held.delivery_id, held.visible_in) == (b"a", a.delivery_id, 30.0)
    [parked] = contents.delayed
    assert (parked.body, parked.ready_in) == (b"b", 10.0)

    stats = await mb.queue_stats("jobs")
    assert (stats.ready, stats.in_flight, stats.delayed) == (1, 1, 1)
    assert (stats.published, stats.delivered, stats.requeued) == (3, 2, 1)
# --- end


# --- snippet: group lag
async def test_consumer_group_lag(minibroker_client: minibroker.Client) -> None:
    mb = minibroker_client
    await mb.create_log("events")
    await mb.append_many("events", [b"e%d" % i for i in range(10)])
    await mb.commit("events", "projector", 4)  # processed 0..3, reads 4 next

    stats = await mb.log_stats("events")
    assert (stats.first_offset, stats.next_offset) == (0, 10)
    assert stats.groups["projector"].committed == 4
    assert stats.groups["projector"].lag == 6
    assert await mb.committed("events", "unknown") is None
# --- end


# --- snippet: core
async def test_looking_at_the_core(minibroker_broker: minibroker.EmbeddedBroker) -> None:
    async with minibroker_broker.connect() as mb, mb.subscribe("orders.#", group="billing"):
        namespace = minibroker_broker.core.namespace("")  # the default namespace
        assert namespace.topics.subscription_count == 1
        assert namespace.topics.group_count == 1
        route = namespace.topics.match("orders.eu.placed")  # where a publish would go
        assert [member.pattern for _, members in route.groups for member in members] == [
            "orders.#"
        ]
        assert namespace.rpc.snapshot().pending == 0
# --- end
