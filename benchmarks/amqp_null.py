"""A scripted AMQP 0-9-1 responder that costs next to nothing per message.

Not a broker: the ceiling of the *clients*. It answers the handshake and every
synchronous method the harness's W1 and W2 roles send (benchmarks/targets/
rabbitmq.py, the same role functions that drive RabbitMQ and minibroker's
AMQP port) with canned replies, and turns each Basic.Publish into a
Basic.Deliver to the consumers of the queues it reaches, forwarding the
publish's content header and body frames as they came (only the channel
number is rewritten). What it leaves out is what makes a broker cost
something:

* no routing: a publish to an exchange goes to every queue bound to it (all
  the harness's bindings match all its keys), one to the default exchange to
  the queue it names;
* no prefetch (deliveries go out in batches of up to a millisecond, however
  many) and no acks kept (they are read and dropped); publisher confirms are
  one ``Basic.Ack multiple`` per chunk of input;
* no storage, no queue: a message with no consumer yet waits in a list.

So a client run against it spends what the client itself costs per message,
and its rate is the most that client can reach against any broker on this
machine. Start it with ``python -m benchmarks.amqp_null [--port N]``; it
prints ``listening on PORT``. benchmarks/amqp_ceiling.py runs the harness's
scenarios against it, RabbitMQ and minibroker in the same rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import struct
from dataclasses import dataclass, field
from typing import Any, Final

from pamqp import commands, frame
from pamqp.base import Frame

PROTOCOL_HEADER: Final = b"AMQP\x00\x00\x09\x01"
FRAME_END: Final = b"\xce"
_HEAD: Final = struct.Struct(">BHI")
_IDS: Final = struct.Struct(">HH")
_U64: Final = struct.Struct(">Q")
METHOD, HEADER, BODY, HEARTBEAT = 1, 2, 3, 8
_PUBLISH: Final = (60, 40)
_ACKS: Final = {(60, 80), (60, 120), (60, 90)}  # ack, nack, reject: read and dropped
#: Seconds deliveries wait to be sent with the ones that follow (see flush_soon).
FLUSH_DELAY: Final = 0.001


@dataclass(eq=False)
class Consumer:
    conn: NullConnection
    channel: int
    tag: bytes
    tags: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


@dataclass
class Queue:
    consumers: list[Consumer] = field(default_factory=list)
    turn: int = 0
    #: Messages published before anyone consumed: (exchange, key, header, bodies).
    waiting: list[tuple[bytes, bytes, bytes, list[bytes]]] = field(default_factory=list)


class World:
    """Queues and bindings shared by every connection of one responder."""

    def __init__(self) -> None:
        self.queues: dict[str, Queue] = {}
        self.bindings: dict[str, set[str]] = {}
        self.names = itertools.count(1)

    def queue(self, name: str) -> Queue:
        found = self.queues.get(name)
        if found is None:
            found = self.queues[name] = Queue()
        return found


def _shortstr(data: bytes, at: int) -> tuple[bytes, int]:
    size = data[at]
    return data[at + 1 : at + 1 + size], at + 1 + size


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return _HEAD.pack(kind, channel, len(payload)) + payload + FRAME_END


class NullConnection(asyncio.Protocol):
    def __init__(self, world: World) -> None:
        self.world = world
        self.buffer = b""
        self.started = False
        self.transport: asyncio.Transport | None = None
        self.confirming: dict[int, int] = {}  # channel -> last publish sequence number
        self.confirmed: dict[int, int] = {}  # channel -> last sequence number acked
        #: Per channel, the publish whose content is arriving: (consumers it goes
        #: to, queues with no consumer that keep it, exchange, routing key).
        self.content: dict[int, tuple[list[Consumer], list[Queue], bytes, bytes]] = {}
        self.out: list[bytes] = []
        self.flush_due = False

    # ---------------------------------------------------------------- I/O

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        at = 0
        if not self.started:
            if len(buffer) < 8:
                self.buffer = buffer
                return
            self.started = True
            at = 8
            self._reply(0, commands.Connection.Start(server_properties=_SERVER_PROPERTIES))
        touched: set[NullConnection] = {self}
        end = len(buffer)
        while end - at >= 7:
            kind, channel, size = _HEAD.unpack_from(buffer, at)
            if end - at < size + 8:
                break
            payload = buffer[at + 7 : at + 7 + size]
            at += size + 8
            if kind in (BODY, HEADER):
                self._content(kind, channel, payload, touched)
            elif kind == METHOD:
                ids = _IDS.unpack_from(payload)
                if ids == _PUBLISH:
                    self._publish(channel, payload)
                elif ids not in _ACKS:
                    self._method(channel, payload)
        self.buffer = buffer[at:]
        for channel, seq in self.confirming.items():
            if seq != self.confirmed.get(channel, 0):
                self.confirmed[channel] = seq
                self.out.append(frame.marshal(commands.Basic.Ack(seq, multiple=True), channel))
        self.flush()
        touched.discard(self)
        for conn in touched:
            conn.flush_soon()

    def flush(self) -> None:
        self.flush_due = False
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
            self.out = []

    def flush_soon(self) -> None:
        """Deliveries go out in batches, at most FLUSH_DELAY after the first: a
        consumer reading one message per recv() would pay more per message than
        against a real broker, which batches (pika sends every frame of a publish
        with its own send(), so each arrives in a data_received of its own)."""
        if not self.flush_due:
            self.flush_due = True
            asyncio.get_running_loop().call_later(FLUSH_DELAY, self.flush)

    def connection_lost(self, exc: Exception | None) -> None:
        for queue in self.world.queues.values():
            queue.consumers = [c for c in queue.consumers if c.conn is not self]
        self.transport = None

    # ------------------------------------------------------------ publish

    def _publish(self, channel: int, payload: bytes) -> None:
        exchange, at = _shortstr(payload, 6)
        key, _ = _shortstr(payload, at)
        world = self.world
        names = world.bindings.get(exchange.decode(), ()) if exchange else (key.decode(),)
        targets: list[Consumer] = []
        keep: list[Queue] = []
        for name in names:
            queue = world.queue(name)
            if queue.consumers:
                queue.turn = (queue.turn + 1) % len(queue.consumers)
                targets.append(queue.consumers[queue.turn])
            else:
                queue.waiting.append((exchange, key, b"", []))
                keep.append(queue)
        self.content[channel] = (targets, keep, exchange, key)
        if channel in self.confirming:
            self.confirming[channel] += 1

    def _content(
        self, kind: int, channel: int, payload: bytes, touched: set[NullConnection]
    ) -> None:
        targets, keep, exchange, key = self.content[channel]
        for queue in keep:  # nobody consumes yet: kept for the first consumer
            bodies = queue.waiting[-1][3]
            if kind == HEADER:
                queue.waiting[-1] = (exchange, key, payload, bodies)
            else:
                bodies.append(payload)
        if kind == HEADER:
            for consumer in targets:
                consumer.conn.deliver(consumer, exchange, key, payload, ())
                touched.add(consumer.conn)
        else:
            for consumer in targets:
                consumer.conn.out.append(_frame(BODY, consumer.channel, payload))
                touched.add(consumer.conn)

    def deliver(
        self,
        consumer: Consumer,
        exchange: bytes,
        key: bytes,
        header: bytes,
        bodies: tuple[bytes, ...] | list[bytes],
    ) -> None:
        tag = _U64.pack(next(consumer.tags))
        method = (
            b"\x00\x3c\x00\x3c"
            + bytes([len(consumer.tag)])
            + consumer.tag
            + tag
            + b"\x00"
            + bytes([len(exchange)])
            + exchange
            + bytes([len(key)])
            + key
        )
        self.out.append(_frame(METHOD, consumer.channel, method))
        self.out.append(_frame(HEADER, consumer.channel, header))
        for body in bodies:
            self.out.append(_frame(BODY, consumer.channel, body))

    # ------------------------------------------------------------ methods

    def _method(self, channel: int, payload: bytes) -> None:
        method = frame._unmarshal_method_frame(payload)  # pamqp's own decoder
        reply = self._answer(channel, method)
        if reply is not None:
            self._reply(channel, reply)
        if isinstance(method, commands.Connection.Close) and self.transport is not None:
            self.flush()
            self.transport.close()

    def _answer(self, channel: int, m: Frame) -> Frame | None:
        world = self.world
        if isinstance(m, commands.Connection.StartOk):
            return commands.Connection.Tune(channel_max=2047, frame_max=131072, heartbeat=0)
        if isinstance(m, commands.Connection.Open):
            return commands.Connection.OpenOk()
        if isinstance(m, commands.Connection.Close):
            return commands.Connection.CloseOk()
        if isinstance(m, commands.Channel.Open):
            return commands.Channel.OpenOk()
        if isinstance(m, commands.Channel.Close):
            self.confirming.pop(channel, None)
            return commands.Channel.CloseOk()
        if isinstance(m, commands.Confirm.Select):
            self.confirming[channel] = 0
            return None if m.nowait else commands.Confirm.SelectOk()
        if isinstance(m, commands.Basic.Qos):
            return commands.Basic.QosOk()
        if isinstance(m, commands.Exchange.Declare):
            return None if m.nowait else commands.Exchange.DeclareOk()
        if isinstance(m, commands.Queue.Declare):
            name = m.queue or f"amq.gen-{next(world.names)}"
            world.queue(name)
            return None if m.nowait else commands.Queue.DeclareOk(name, 0, 0)
        if isinstance(m, commands.Queue.Bind):
            world.bindings.setdefault(m.exchange, set()).add(m.queue)
            return None if m.nowait else commands.Queue.BindOk()
        if isinstance(m, commands.Queue.Delete):
            world.queues.pop(m.queue, None)
            for bound in world.bindings.values():
                bound.discard(m.queue)
            return None if m.nowait else commands.Queue.DeleteOk(0)
        if isinstance(m, commands.Basic.Consume):
            return self._consume(channel, m)
        if isinstance(m, commands.Basic.Cancel):
            for queue in world.queues.values():
                queue.consumers = [
                    c
                    for c in queue.consumers
                    if not (c.conn is self and c.tag == (m.consumer_tag or "").encode())
                ]
            return None if m.nowait else commands.Basic.CancelOk(m.consumer_tag)
        return None

    def _consume(self, channel: int, m: commands.Basic.Consume) -> Frame | None:
        tag = m.consumer_tag or f"null.{next(self.world.names)}"
        consumer = Consumer(self, channel, tag.encode())
        queue = self.world.queue(m.queue)
        queue.consumers.append(consumer)
        if not m.nowait:
            self._reply(channel, commands.Basic.ConsumeOk(tag))
        waiting, queue.waiting = queue.waiting, []
        for exchange, key, header, bodies in waiting:
            self.deliver(consumer, exchange, key, header, bodies)
        return None

    def _reply(self, channel: int, method: Frame) -> None:
        self.out.append(frame.marshal(method, channel))


_SERVER_PROPERTIES: Final[dict[str, Any]] = {
    "product": "amqp-null",
    "version": "0",
    "capabilities": {
        "publisher_confirms": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "exchange_exchange_bindings": True,
        "per_consumer_qos": True,
    },
}


async def serve(port: int) -> None:
    world = World()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: NullConnection(world), "127.0.0.1", port)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
