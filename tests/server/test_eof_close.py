"""A client's EOF ends its connection promptly, however busy its subscriptions (issue 14).

A half-closed client (``printf ... | nc``) still gets the answers to what it
sent, but pushes that keep coming on a busy topic used to be flushed after
its EOF until the server's close deadline (``CLOSE_FLUSH_SECONDS``): the
fuzz campaign's last "hangs" (docs/reliability.md). Time here is a
``MockClock`` that moves only as the subscriber reads, at a modelled
4 MiB/s, so "promptly" is measured in bytes the server still sent.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from raw_wire import RawClient, hello, ping

from minibroker.embedded import open_broker
from minibroker.server.connection import CLOSE_FLUSH_SECONDS

#: Seconds of mock time per byte the subscriber reads (4 MiB/s).
SECONDS_PER_BYTE = 1 / (4 * 1024 * 1024)
BATCH = [b"m" * 1024] * 256


async def test_a_half_closed_subscriber_on_a_busy_topic_is_closed_promptly(
    mock_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_broker() as broker,
        broker.connect(client_name="publisher") as publisher,
        broker.connect(client_name="bystander") as bystander,
    ):
        subscriber = RawClient(broker.server.open_in_process_stream())
        subscribe = {"op": "subscribe", "id": 2, "pattern": "busy", "buffer": 100_000}
        await subscriber.send(hello(), subscribe)
        assert [f["op"] for f in await subscriber.receive(2)] == ["ok", "ok"]
        # A backlog of 16 MiB (the subscription's byte limit) the subscriber
        # has not read, and more coming.
        for _ in range(64):
            await publisher.publish_many("busy", BATCH)
        eof_at = trio.current_time()
        await subscriber.send(ping(3, b"three"), ping(4, b"four"))
        await subscriber.stream.send_eof()  # type: ignore[attr-defined]

        frames: list[dict[str, Any]] = []
        async with trio.open_nursery() as nursery:

            async def keep_publishing() -> None:
                while True:
                    await publisher.publish_many("busy", BATCH)

            nursery.start_soon(keep_publishing)
            while True:
                data = await subscriber.stream.receive_some(65536)
                if not data:
                    break
                mock_clock.jump(len(data) * SECONDS_PER_BYTE)
                subscriber.decoder.receive_data(data)
                frames.extend(subscriber.decoder.values())
                if trio.current_time() - eof_at > 2 * CLOSE_FLUSH_SECONDS:
                    break  # the unfixed server stops at its deadline; never loop forever
            closed_after = trio.current_time() - eof_at
            nursery.cancel_scope.cancel()

        answers = {f["id"]: f["result"] for f in frames if f["op"] == "ok"}
        assert answers == {3: b"three", 4: b"four"}
        # What was already on its way (the pipe's 1 MiB and one outbound
        # buffer) arrives; nothing drained after the EOF does. (Unfixed, the
        # server kept pushing until its deadline: 5.8 s of reading.)
        assert closed_after < CLOSE_FLUSH_SECONDS / 5
        await subscriber.aclose()
        # Everyone else is unaffected: the publisher kept being answered above,
        # and the bystander is answered now.
        assert await bystander.ping(b"still here") == b"still here"
        assert (await publisher.publish_many("busy", BATCH)).subscriptions == 0
        await trio.testing.wait_all_tasks_blocked()
        names = sorted(s.client_name for s in broker.server.sessions.values())
        assert names == ["bystander", "publisher"]
