"""RabbitMQ at 127.0.0.1:5672 (guest/guest), through pika and aio-pika.

Configured as a performance-minded user would:

* W1: a classic, non-durable queue with transient messages (the same promise as
  minibroker's in-memory queue); the consumer sets a prefetch of
  ``cfg.prefetch`` and acks with ``multiple=True`` every ``cfg.ack_every``
  messages. The confirmed variant turns on publisher confirms: aio-pika keeps a
  window of ``cfg.confirm_window`` unconfirmed publishes; pika's
  BlockingConnection can only wait for each confirm in turn. Both clients are
  measured; the report keeps the faster one and names it.
* W2: a topic exchange; each subscriber binds its own exclusive queue with the
  pattern ``<topic>.*`` and consumes with automatic acks (at-most-once, like a
  topic subscription).
* W4: an RPC queue served by one responder; replies go through direct reply-to
  (``amq.rabbitmq.reply-to``, no reply queue), correlation ids per request.
* W5: RabbitMQ runs here as a system service, so its start-up is not timed; the
  RSS of the running node is reported as observed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from benchmarks.child import (
    RoleContext,
    asyncio_wait_done,
    asyncio_wait_go,
    asyncio_wait_stop,
)
from benchmarks.config import HOST, RABBITMQ_PORT
from benchmarks.payload import Verifier, batched, make_bodies
from benchmarks.stats import RequesterTally
from benchmarks.targets.base import Target, dist_version, listener_pid, port_open
from benchmarks.workloads import Impl

if TYPE_CHECKING:
    import pika

MODULE = __name__
EXCHANGE = "minibroker-bench.topic"
REPLY_TO = "amq.rabbitmq.reply-to"
# Confirmed stream appends run at a few thousand per second here: 100k keeps W3 inside the
# phase timeout (the report shows the capped count).
STREAM_COUNT_CAP = 100_000
POLL = 0.1


class RabbitMQTarget(Target):
    name = "rabbitmq"
    title = "RabbitMQ"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server_version = "unknown"
        #: Where the AMQP broker listens (minibroker-amqp drives its own port the same way).
        self.port = RABBITMQ_PORT

    def setup(self) -> str | None:
        try:
            import pika
        except ImportError as exc:
            return f"pika is not installed ({exc}); pip install pika aio-pika"
        if not port_open(RABBITMQ_PORT):
            return f"nothing listens on {HOST}:{RABBITMQ_PORT}"
        try:
            conn = _pika_connect({"host": HOST, "port": RABBITMQ_PORT})
        except Exception as exc:
            return f"cannot connect to RabbitMQ at {HOST}:{RABBITMQ_PORT}: {exc!r}"
        props = conn._impl.server_properties
        self.server_version = str(props.get("version", "unknown"))
        conn.close()
        del pika
        return None

    def cpu_pid(self) -> int | None:
        """The running RabbitMQ node (beam.smp), found by its port: a system service."""
        return listener_pid(self.port)

    def versions(self) -> dict[str, str]:
        return {
            "RabbitMQ server": self.server_version,
            "pika": dist_version("pika"),
            "aio-pika": dist_version("aio-pika"),
        }

    def notes(self) -> list[str]:
        c = self.cfg
        return [
            f"W1: classic non-durable queue, transient messages; prefetch {c.prefetch}, "
            f"basic.ack multiple=True every {c.ack_every} messages. Confirmed variant: publisher "
            f"confirms, aio-pika with {c.confirm_window} unconfirmed publishes in flight, pika "
            "BlockingConnection waiting for each confirm (its only mode). Both pika and aio-pika "
            "measured; the comparison keeps the faster.",
            "W2: topic exchange, one exclusive queue per subscriber bound with `<topic>.*`, "
            "automatic acks (at-most-once, like a topic subscription); pika BlockingConnection "
            "and aio-pika (plain publishes, no confirms).",
            f"W3 (extra): a stream queue (x-queue-type=stream, always persisted); append with "
            f"aio-pika and {c.confirm_window} publisher confirms outstanding, replay with pika "
            f"from x-stream-offset=first, prefetch {c.prefetch}, multiple-ack every {c.ack_every}.",
            "W4: RPC queue with one responder (auto-ack), replies by direct reply-to "
            "(amq.rabbitmq.reply-to); 16 in flight = 16 outstanding correlation ids on one "
            "channel; pika BlockingConnection and aio-pika (a future per correlation id).",
            "W5: RabbitMQ is a system service here, not launched by the harness: no start-up "
            "time, and the RSS shown is the running node's, observed.",
        ]

    def impls(self, workload: str) -> list[Impl]:
        params = {"host": HOST, "port": self.port}
        pika_v, aio_v = dist_version("pika"), dist_version("aio-pika")
        if workload == "w1":
            return [
                Impl(
                    f"pika {pika_v} (BlockingConnection)",
                    {
                        "producer": f"{MODULE}:w1_producer_pika",
                        "consumer": f"{MODULE}:w1_consumer_pika",
                    },
                    params,
                ),
                Impl(
                    f"aio-pika {aio_v}",
                    {
                        "producer": f"{MODULE}:w1_producer_aio",
                        "consumer": f"{MODULE}:w1_consumer_aio",
                    },
                    params,
                ),
            ]
        if workload == "w2":
            return [
                Impl(
                    f"pika {pika_v} (BlockingConnection)",
                    {
                        "publisher": f"{MODULE}:w2_publisher_pika",
                        "subscriber": f"{MODULE}:w2_subscriber_pika",
                    },
                    params,
                ),
                Impl(
                    f"aio-pika {aio_v}",
                    {
                        "publisher": f"{MODULE}:w2_publisher_aio",
                        "subscriber": f"{MODULE}:w2_subscriber_aio",
                    },
                    params,
                ),
            ]
        if workload == "w3":
            return [
                Impl(
                    f"aio-pika {aio_v} append / pika {pika_v} replay (stream queue)",
                    {
                        "appender": f"{MODULE}:w3_appender_aio",
                        "replayer": f"{MODULE}:w3_replayer_pika",
                    },
                    params,
                    detail="RabbitMQ stream: always on disk, compare with minibroker-durable",
                    count_cap=STREAM_COUNT_CAP,
                )
            ]
        if workload == "w4":
            return [
                Impl(
                    f"pika {pika_v} (BlockingConnection)",
                    {
                        "requester": f"{MODULE}:w4_requester_pika",
                        "responder": f"{MODULE}:w4_responder_pika",
                    },
                    params,
                ),
                Impl(
                    f"aio-pika {aio_v}",
                    {
                        "requester": f"{MODULE}:w4_requester_aio",
                        "responder": f"{MODULE}:w4_responder_aio",
                    },
                    params,
                ),
            ]
        if workload == "w5":
            return [
                Impl(
                    "psutil (observed)",
                    {"startup": f"{MODULE}:w5_observed_rss"},
                    params,
                    variants=("idle_rss",),
                    detail="running system service, observed after the other workloads",
                )
            ]
        return []


# --- pika ------------------------------------------------------------------------


def _pika_connect(p: dict[str, Any]) -> pika.BlockingConnection:
    import pika

    params = pika.ConnectionParameters(
        host=p["host"],
        port=p["port"],
        credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0,  # bounded runs; no heartbeat timer in the way
        blocked_connection_timeout=60,
    )
    return pika.BlockingConnection(params)


def w1_producer_pika(ctx: RoleContext) -> dict[str, Any]:
    p = ctx.params
    bodies = make_bodies(p["count"], p["body_size"])
    conn = _pika_connect(p)
    try:
        ch = conn.channel()
        if p["confirmed"]:
            ch.confirm_delivery()  # every basic_publish now waits for its confirm
        ctx.ready()
        ctx.wait_go()
        t_start = time.perf_counter()
        queue = p["queue"]
        for i, body in enumerate(bodies):
            ch.basic_publish("", queue, body)
            if i % 1000 == 0:
                ctx.check_deadline()
        conn.process_data_events(0)
        t_end = time.perf_counter()
    finally:
        conn.close()
    return {"t_start": t_start, "t_end": t_end, "sent": len(bodies)}


def w1_consumer_pika(ctx: RoleContext) -> dict[str, Any]:
    p = ctx.params
    verifier = Verifier(p["count"], p["body_size"])
    ack_every = int(p["ack_every"])
    unacked = 0
    conn = _pika_connect(p)
    try:
        ch = conn.channel()
        ch.queue_declare(p["queue"], durable=False)
        ch.basic_qos(prefetch_count=p["prefetch"])

        def on_message(chan: Any, method: Any, _props: Any, body: bytes) -> None:
            nonlocal unacked
            verifier.add(body)
            unacked += 1
            if unacked >= ack_every or verifier.done:
                chan.basic_ack(method.delivery_tag, multiple=True)
                unacked = 0

        ch.basic_consume(p["queue"], on_message)
        ctx.ready()
        while not verifier.done and not ctx.stalled(verifier):
            conn.process_data_events(time_limit=POLL)
            ctx.progress(verifier.distinct)
        ctx.progress(verifier.distinct)
        ch.queue_delete(p["queue"])
    finally:
        conn.close()
    return verifier.report()


def w2_publisher_pika(ctx: RoleContext) -> dict[str, Any]:
    p = ctx.params
    bodies = make_bodies(p["count"], p["body_size"])
    conn = _pika_connect(p)
    try:
        ch = conn.channel()
        ch.exchange_declare(EXCHANGE, exchange_type="topic", auto_delete=True)
        ctx.ready()
        ctx.wait_go()
        key = f"{p['topic']}.a"
        t_start = time.perf_counter()
        for i, body in enumerate(bodies):
            ch.basic_publish(EXCHANGE, key, body)
            if i % 1000 == 0:
                ctx.check_deadline()
        conn.process_data_events(0)
        t_end = time.perf_counter()
    finally:
        conn.close()
    return {"t_start": t_start, "t_end": t_end, "sent": len(bodies)}


def w2_subscriber_pika(ctx: RoleContext) -> dict[str, Any]:
    p = ctx.params
    verifier = Verifier(p["count"], p["body_size"])
    conn = _pika_connect(p)
    try:
        ch = conn.channel()
        ch.exchange_declare(EXCHANGE, exchange_type="topic", auto_delete=True)
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queue, EXCHANGE, routing_key=f"{p['topic']}.*")
        ch.basic_consume(queue, lambda _c, _m, _p, body: verifier.add(body), auto_ack=True)
        ctx.ready()
        while not verifier.done and not ctx.stalled(verifier):
            conn.process_data_events(time_limit=POLL)
            ctx.progress(verifier.distinct)
        ctx.progress(verifier.distinct)
    finally:
        conn.close()
    return verifier.report()


def w4_responder_pika(ctx: RoleContext) -> dict[str, Any]:
    import pika

    p = ctx.params
    served = 0
    conn = _pika_connect(p)
    try:
        ch = conn.channel()
        ch.queue_declare(p["subject"], exclusive=True)
        ch.basic_qos(prefetch_count=p["prefetch"])

        def on_request(chan: Any, _method: Any, props: Any, body: bytes) -> None:
            nonlocal served
            reply_props = pika.BasicProperties(correlation_id=props.correlation_id)
            chan.basic_publish("", props.reply_to, body, reply_props)
            served += 1

        ch.basic_consume(p["subject"], on_request, auto_ack=True)
        ctx.ready()
        while not ctx.stop_requested() and ctx.time_left() > 0:
            conn.process_data_events(time_limit=POLL)
    finally:
        conn.close()
    return {"served": served}


def w4_requester_pika(ctx: RoleContext) -> dict[str, Any]:
    import pika

    p = ctx.params
    size, subject, timeout = p["body_size"], p["subject"], float(p["request_timeout"])
    warmup, sequential, concurrent = p["warmup"], p["sequential"], p["concurrent"]
    bodies = make_bodies(warmup + sequential + concurrent, size)
    tally = RequesterTally()
    sent_at: dict[int, float] = {}
    done = 0
    phase = "sequential"
    next_seq = 0
    conc_end = 0

    conn = _pika_connect(p)
    try:
        ch = conn.channel()

        def send(seq: int) -> None:
            props = pika.BasicProperties(reply_to=REPLY_TO, correlation_id=str(seq))
            sent_at[seq] = time.perf_counter()
            ch.basic_publish("", subject, bodies[seq], props)

        def on_reply(_c: Any, _m: Any, props: Any, body: bytes) -> None:
            nonlocal done, next_seq
            arrived = time.perf_counter()
            seq = int(props.correlation_id)
            started = sent_at.pop(seq, None)
            if started is None:
                return  # a late reply to a request already counted as failed
            if body != bodies[seq]:
                tally.mismatches += 1
            done += 1
            if phase == "sequential":
                if seq >= warmup:
                    tally.latencies.append(arrived - started)
                    tally.seq_count += 1
            else:
                tally.conc_count += 1
                if next_seq < conc_end:
                    send(next_seq)
                    next_seq += 1

        ch.basic_consume(REPLY_TO, on_reply, auto_ack=True)
        ctx.ready()
        ctx.wait_go()

        # sequential: one request at a time (warm-up first, not counted)
        for seq in range(warmup + sequential):
            send(seq)
            give_up = time.perf_counter() + timeout
            while seq in sent_at and time.perf_counter() < give_up:
                conn.process_data_events(time_limit=timeout)
            if seq in sent_at:
                sent_at.pop(seq)
                tally.error(f"request {seq} timed out")
            ctx.progress(seq + 1)
            ctx.check_deadline()

        # concurrent: keep `concurrency` requests outstanding until all are answered
        phase = "concurrent"
        first = warmup + sequential
        conc_end = first + concurrent
        t0 = time.perf_counter()
        next_seq = first
        while next_seq < min(conc_end, first + p["concurrency"]):
            send(next_seq)
            next_seq += 1
        last_progress = time.perf_counter()
        answered = 0
        while tally.conc_count < concurrent and ctx.time_left() > 0:
            conn.process_data_events(time_limit=POLL)
            if tally.conc_count != answered:
                answered, last_progress = tally.conc_count, time.perf_counter()
                ctx.progress(first + answered)
            elif time.perf_counter() - last_progress > timeout:
                tally.error(f"{len(sent_at)} concurrent requests timed out")
                break
        tally.conc_elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    return tally.report()


def w5_observed_rss(ctx: RoleContext) -> dict[str, Any]:
    import psutil

    port = ctx.params["port"]
    for conn in psutil.net_connections(kind="tcp"):
        if (
            conn.status == psutil.CONN_LISTEN
            and conn.laddr
            and conn.laddr.port == port
            and conn.pid
        ):
            proc = psutil.Process(conn.pid)
            rss = proc.memory_info().rss / 2**20
            ctx.ready()
            return {
                "metrics": {"idle_rss": rss},
                "detail": f"{proc.name()} pid {conn.pid}, observed, not launched",
            }
    raise RuntimeError(f"no process found listening on port {port}")


# --- aio-pika ----------------------------------------------------------------------


def _amqp_url(p: dict[str, Any]) -> str:
    return f"amqp://guest:guest@{p['host']}:{p['port']}/"


def w1_producer_aio(ctx: RoleContext) -> dict[str, Any]:
    return asyncio.run(_w1_producer_aio(ctx))


async def _w1_producer_aio(ctx: RoleContext) -> dict[str, Any]:
    import aio_pika

    p = ctx.params
    bodies = make_bodies(p["count"], p["body_size"])
    queue, confirmed = p["queue"], bool(p["confirmed"])
    transient = aio_pika.DeliveryMode.NOT_PERSISTENT
    conn = await aio_pika.connect(_amqp_url(p))
    async with conn:
        ch = await conn.channel(publisher_confirms=confirmed)
        exchange = ch.default_exchange
        ctx.ready()
        await asyncio_wait_go(ctx)
        t_start = time.perf_counter()
        if confirmed:
            for chunk in batched(bodies, int(p["confirm_window"])):
                await asyncio.gather(
                    *(
                        exchange.publish(
                            aio_pika.Message(b, delivery_mode=transient), routing_key=queue
                        )
                        for b in chunk
                    )
                )
                ctx.check_deadline()
        else:
            for i, body in enumerate(bodies):
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=transient), routing_key=queue
                )
                if i % 1000 == 0:
                    ctx.check_deadline()
        t_end = time.perf_counter()
    return {"t_start": t_start, "t_end": t_end, "sent": len(bodies)}


def w1_consumer_aio(ctx: RoleContext) -> dict[str, Any]:
    return asyncio.run(_w1_consumer_aio(ctx))


async def _w1_consumer_aio(ctx: RoleContext) -> dict[str, Any]:
    import aio_pika

    p = ctx.params
    verifier = Verifier(p["count"], p["body_size"])
    ack_every = int(p["ack_every"])
    unacked = 0
    done = asyncio.Event()
    conn = await aio_pika.connect(_amqp_url(p))
    async with conn:
        ch = await conn.channel()
        await ch.set_qos(prefetch_count=p["prefetch"])
        queue = await ch.declare_queue(p["queue"], durable=False)

        async def on_message(message: Any) -> None:
            nonlocal unacked
            verifier.add(message.body)
            unacked += 1
            if unacked >= ack_every or verifier.done:
                unacked = 0
                await message.ack(multiple=True)
            if verifier.distinct % 1000 == 0:
                ctx.progress(verifier.distinct)
            if verifier.done:
                done.set()

        tag = await queue.consume(on_message, no_ack=False)
        ctx.ready()
        await asyncio_wait_done(ctx, verifier, done)
        ctx.progress(verifier.distinct)
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
    return verifier.report()


async def _aio_done_or_stalled(ctx: RoleContext, verifier: Verifier) -> None:
    done = asyncio.Event()
    while not verifier.done and not ctx.stalled(verifier):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), POLL)
        ctx.progress(verifier.distinct)
    ctx.progress(verifier.distinct)


def w2_publisher_aio(ctx: RoleContext) -> dict[str, Any]:
    return asyncio.run(_w2_publisher_aio(ctx))


async def _w2_publisher_aio(ctx: RoleContext) -> dict[str, Any]:
    import aio_pika

    p = ctx.params
    bodies = make_bodies(p["count"], p["body_size"])
    transient = aio_pika.DeliveryMode.NOT_PERSISTENT
    conn = await aio_pika.connect(_amqp_url(p))
    async with conn:
        ch = await conn.channel(publisher_confirms=False)
        exchange = await ch.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, auto_delete=True
        )
        ctx.ready()
        await asyncio_wait_go(ctx)
        key = f"{p['topic']}.a"
        t_start = time.perf_counter()
        for i, body in enumerate(bodies):
            await exchange.publish(aio_pika.Message(body, delivery_mode=transient), key)
            if i % 1000 == 0:
                ctx.check_deadline()
        t_end = time.perf_counter()
    return {"t_start": t_start, "t_end": t_end, "sent": len(bodies)}


def w2_subscriber_aio(ctx: RoleContext) -> dict[str, Any]:
    return asyncio.run(_w2_subscriber_aio(ctx))


async def _w2_subscriber_aio(ctx: RoleContext) -> dict[str, Any]:
    import aio_pika

    p = ctx.params
    verifier = Verifier(p["count"], p["body_size"])
    conn = await aio_pika.connect(_amqp_url(p))
    async with conn:
        ch = await conn.channel()
        exchange = await ch.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, auto_delete=True
        )
        queue = await ch.declare_queue("", exclusive=True)
        await queue.bind(exchange, routing_key=f"{p['topic']}.*")

        async def on_message(message: Any) -> None:
            verifier.add(message.body)

        await queue.consume(on_message, no_ack=True)
        ctx.ready()
        await _aio_done_or_stalled(ctx, verifier)
    return verifier.report()


def w4_responder_aio(ctx: RoleContext) -> dict[str, Any]:
    return asyncio.run(_w4_responder_aio(ctx))


async def _w4_responder_aio(ctx: RoleContext) -> dict[str, Any]:
    import aio_pika

    p = ctx.params
    served = 0
    conn = await aio_pika.connect(_amqp_url(p))
    async with conn:
        ch = await conn.channel(publisher_confirms=False)
        await ch.set_qos(prefetch_count=p["prefetch"])
        queue = await ch.declare_queue(p["subject"], exclusive=True)
        exchange = ch.default_exchange

        async def on_request(message: Any) -> None:
            nonlocal served
            reply = aio_pika.Message(message.body, correlation_id=message.correlation_id)
            await exchange.publish(reply, routing_key=message.reply_to)
            served += 1

        await queue.consume(on_request, no_ack=True)
        ctx.ready()
        await asyncio_wait_stop(ctx)
    return {"served": served}


def w4_requester_aio(ctx: RoleContext) -> dict[str, Any]:
    return asyncio.run(_w4_requester_aio(ctx))


async def _w4_requester_aio(ctx: RoleContext) -> dict[str, Any]:
    import aio_pika

    p = ctx.params
    size, subject, timeout = p["body_size"], p["subject"], float(p["request_timeout"])
    warmup, sequential, concurrent = p["warmup"], p["sequential"], p["concurrent"]
    bodies = make_bodies(warmup + sequential + concurrent, size)
    tally = RequesterTally()
    pending: dict[str, asyncio.Future[bytes]] = {}
    conn = await aio_pika.connect(_amqp_url(p))
    async with conn:
        ch = await conn.channel(publisher_confirms=False)
        exchange = ch.default_exchange
        # Direct reply-to: consume the pseudo-queue without declaring it (no_ack is required).
        replies = aio_pika.Queue(ch, REPLY_TO, False, False, False, None)

        async def on_reply(message: Any) -> None:
            future = pending.pop(message.correlation_id or "", None)
            if future is not None and not future.done():
                future.set_result(message.body)

        await replies.consume(on_reply, no_ack=True)

        async def call(seq: int) -> float:
            future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            pending[str(seq)] = future
            started = time.perf_counter()
            message = aio_pika.Message(bodies[seq], reply_to=REPLY_TO, correlation_id=str(seq))
            await exchange.publish(message, routing_key=subject)
            try:
                body = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                pending.pop(str(seq), None)
                tally.error(f"request {seq} timed out")
                return 0.0
            if body != bodies[seq]:
                tally.mismatches += 1
            return time.perf_counter() - started

        ctx.ready()
        await asyncio_wait_go(ctx)
        for seq in range(warmup + sequential):
            elapsed = await call(seq)
            if seq >= warmup and elapsed:
                tally.latencies.append(elapsed)
                tally.seq_count += 1
            ctx.progress(seq + 1)
            ctx.check_deadline()

        first = warmup + sequential
        next_seq = first

        async def worker() -> None:
            nonlocal next_seq
            while next_seq < first + concurrent and ctx.time_left() > 0:
                seq, next_seq = next_seq, next_seq + 1
                if await call(seq):
                    tally.conc_count += 1
                    ctx.progress(first + tally.conc_count)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(int(p["concurrency"]))))
        tally.conc_elapsed = time.perf_counter() - t0
    return tally.report()


# --- W3: stream queue ----------------------------------------------------------------

STREAM_ARGS: dict[str, Any] = {"x-queue-type": "stream"}


def w3_appender_aio(ctx: RoleContext) -> dict[str, Any]:
    return asyncio.run(_w3_appender_aio(ctx))


async def _w3_appender_aio(ctx: RoleContext) -> dict[str, Any]:
    import aio_pika

    p = ctx.params
    bodies = make_bodies(p["count"], p["body_size"])
    stream = p["log"]
    conn = await aio_pika.connect(_amqp_url(p))
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        await ch.declare_queue(stream, durable=True, arguments=STREAM_ARGS)
        exchange = ch.default_exchange
        ctx.ready()
        await asyncio_wait_go(ctx)
        t_start = time.perf_counter()
        done = 0
        for chunk in batched(bodies, int(p["confirm_window"])):
            await asyncio.gather(
                *(exchange.publish(aio_pika.Message(b), routing_key=stream) for b in chunk)
            )
            done += len(chunk)
            ctx.progress(done)
            ctx.check_deadline()
        t_end = time.perf_counter()
    return {"t_start": t_start, "t_end": t_end, "sent": len(bodies), "first_offset": 0}


def w3_replayer_pika(ctx: RoleContext) -> dict[str, Any]:
    p = ctx.params
    verifier = Verifier(p["count"], p["body_size"])
    ack_every = int(p["ack_every"])
    unacked = 0
    conn = _pika_connect(p)
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=p["prefetch"])  # streams require a prefetch

        def on_message(chan: Any, method: Any, _props: Any, body: bytes) -> None:
            nonlocal unacked
            verifier.add(body)
            unacked += 1
            if unacked >= ack_every or verifier.done:
                chan.basic_ack(method.delivery_tag, multiple=True)
                unacked = 0

        ctx.ready()
        ctx.wait_go()
        t_start = time.perf_counter()
        tag = ch.basic_consume(p["log"], on_message, arguments={"x-stream-offset": "first"})
        while not verifier.done and time.perf_counter() < ctx.deadline:
            conn.process_data_events(time_limit=POLL)
            ctx.progress(verifier.distinct)
        ch.basic_cancel(tag)
        ch.queue_delete(p["log"])
    finally:
        conn.close()
    return {**verifier.report(), "t_start": t_start}
