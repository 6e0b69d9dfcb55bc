"""The README's quick start: the four models in one small program.

Run it with ``python docs/examples/quickstart.py`` (no server needed: the
broker is embedded in this process, on memory storage). The README shows the
part between the snippet markers verbatim; tests/docs checks both.
"""

from __future__ import annotations

# --- snippet: quickstart
import trio

import minibroker
from minibroker import IncomingRequest


async def greet(request: IncomingRequest) -> bytes:
    return b"hello " + request.body


async def main() -> None:
    async with minibroker.open_broker() as broker, broker.connect() as mb:
        # Queue: work for one consumer, pulled and acknowledged.
        await mb.declare_queue("emails")
        await mb.put("emails", b"welcome alice")
        [job] = await mb.fetch("emails")
        await job.ack()
        print("queue:", job.body)

        # Topic: pushed to every subscriber whose pattern matches.
        async with mb.subscribe("orders.*") as orders:
            await mb.publish("orders.placed", b"order 1")
            async for message in orders:
                print("topic:", message.topic, message.body)
                break

        # Log: append-only, replayable from any offset.
        await mb.create_log("events")
        async with mb.log_producer("events") as producer:  # ordered, pipelined appends
            for event in (b"created", b"paid"):
                await producer.append(event)
        print("log:", [(r.offset, r.body) for r in await mb.read("events", start=0)])

        # Request/reply: one responder answers, within a deadline.
        async with trio.open_nursery() as nursery:
            await nursery.start(mb.serve, "greet", greet)
            reply = await mb.request("greet", b"bob", timeout=1.0)
            print("request/reply:", reply.body)
            nursery.cancel_scope.cancel()


trio.run(main)
# --- end
