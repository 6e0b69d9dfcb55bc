"""NATS at 127.0.0.1:4222 through nats-py (asyncio), as an extra reference.

* W1 (extra): JetStream, a memory-storage stream per run; the consumer is a
  durable pull consumer with AckPolicy.ALL, fetching batches of ``cfg.batch``
  and acking every ``cfg.ack_every`` messages (one ack covers all before it).
  Plain variant: core publishes into the stream's subject (no PubAck awaited);
  confirmed variant: ``publish_async`` with ``cfg.confirm_window`` PubAcks
  outstanding, all awaited.
* W2: core pub/sub; each subscriber subscribes to ``<topic>.*`` with raised
  client pending limits; the publisher flushes at the end.
* W4: core request/reply: the responder answers on the request's reply
  subject; the requester uses ``nc.request`` (one shared reply inbox), 16
  asyncio tasks for the concurrent part.
* W5: a fresh ``nats-server -js`` on a free port, timed from launch to a
  connect + flush, then its idle RSS.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.child import RoleContext, asyncio_wait_done, asyncio_wait_go, asyncio_wait_stop
from benchmarks.config import HOST, NATS_PORT
from benchmarks.payload import Verifier, make_bodies
from benchmarks.stats import RequesterTally
from benchmarks.targets.base import Target, dist_version, free_port, port_open
from benchmarks.workloads import Impl

MODULE = __name__
PENDING_MSGS = 4_000_000
PENDING_BYTES = 2 * 2**30


class NatsTarget(Target):
    name = "nats"
    title = "NATS"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server_version = "unknown"
        self.jetstream = False

    def setup(self) -> str | None:
        try:
            import nats  # noqa: F401
        except ImportError as exc:
            return f"nats-py is not installed ({exc}); pip install nats-py"
        if not port_open(NATS_PORT):
            return f"nothing listens on {HOST}:{NATS_PORT}"
        try:
            self.server_version, self.jetstream = asyncio.run(_probe(f"nats://{HOST}:{NATS_PORT}"))
        except Exception as exc:
            return f"cannot connect to NATS at {HOST}:{NATS_PORT}: {exc!r}"
        return None

    def versions(self) -> dict[str, str]:
        return {"NATS server": self.server_version, "nats-py": dist_version("nats-py")}

    def notes(self) -> list[str]:
        c = self.cfg
        return [
            f"W1 (extra, JetStream): memory-storage stream per run, durable pull consumer with "
            f"AckPolicy.ALL, fetch batches of {c.batch}, ack every {c.ack_every} messages; "
            f"confirmed variant: publish_async with {c.confirm_window} PubAcks outstanding.",
            "W2: core NATS subjects, subscribers on `<topic>.*` with raised client pending limits.",
            "W4: core request/reply (nc.request with its shared reply inbox); 16 in flight = 16 "
            "asyncio tasks on one connection.",
            "W5: a fresh `nats-server -js` on a free port, launch to connect + flush.",
        ]

    def impls(self, workload: str) -> list[Impl]:
        params = {"url": f"nats://{HOST}:{NATS_PORT}"}
        client = f"nats-py {dist_version('nats-py')}"
        if workload == "w1" and self.jetstream:
            return [
                Impl(
                    f"{client} (JetStream pull)",
                    {"producer": f"{MODULE}:w1_producer", "consumer": f"{MODULE}:w1_consumer"},
                    params,
                )
            ]
        if workload == "w2":
            return [
                Impl(
                    client,
                    {
                        "publisher": f"{MODULE}:w2_publisher",
                        "subscriber": f"{MODULE}:w2_subscriber",
                    },
                    params,
                )
            ]
        if workload == "w4":
            return [
                Impl(
                    client,
                    {"requester": f"{MODULE}:w4_requester", "responder": f"{MODULE}:w4_responder"},
                    params,
                )
            ]
        if workload == "w5":
            binary = shutil.which("nats-server")
            if binary is None:
                return []
            return [
                Impl(
                    f"nats-server {self.server_version}",
                    {"startup": f"{MODULE}:w5_startup"},
                    {"binary": binary, "log_dir": str(self.log_dir)},
                    variants=("startup_server", "idle_rss"),
                )
            ]
        return []


async def _probe(url: str) -> tuple[str, bool]:
    import nats

    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
    try:
        version = str(nc._server_info.get("version", "unknown"))
        try:
            await nc.jetstream().account_info()
            js = True
        except Exception:
            js = False
        return version, js
    finally:
        await nc.close()


async def _connect(url: str) -> Any:
    import nats

    return await nats.connect(url, allow_reconnect=False, connect_timeout=5, pending_size=8 * 2**20)


def _stream_name(queue: str) -> str:
    return queue.replace(".", "_")


# --- W1: JetStream ------------------------------------------------------------------


def w1_producer(ctx: RoleContext) -> dict[str, Any]:
    return asyncio.run(_w1_producer(ctx))


async def _w1_producer(ctx: RoleContext) -> dict[str, Any]:
    p = ctx.params
    bodies = make_bodies(p["count"], p["body_size"])
    subject = p["queue"]
    nc = await _connect(p["url"])
    try:
        js = nc.jetstream(publish_async_max_pending=int(p["confirm_window"]))
        ctx.ready()
        await asyncio_wait_go(ctx)
        t_start = time.perf_counter()
        if p["confirmed"]:
            futures = []

            async def publish_all() -> None:
                for body in bodies:
                    futures.append(await js.publish_async(subject, body))
                await js.publish_async_completed()

            await asyncio.wait_for(publish_all(), ctx.time_left())
            for future in futures:
                future.result()  # raises if the stream refused a message
        else:
            for i, body in enumerate(bodies):
                await nc.publish(subject, body)
                if i % 1000 == 0:
                    ctx.check_deadline()
            await nc.flush(timeout=max(1, int(ctx.time_left())))
        t_end = time.perf_counter()
    finally:
        await nc.close()
    return {"t_start": t_start, "t_end": t_end, "sent": len(bodies)}


def w1_consumer(ctx: RoleContext) -> dict[str, Any]:
    return asyncio.run(_w1_consumer(ctx))


async def _w1_consumer(ctx: RoleContext) -> dict[str, Any]:
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

    p = ctx.params
    verifier = Verifier(p["count"], p["body_size"])
    subject, stream = p["queue"], _stream_name(p["queue"])
    batch, ack_every = int(p["batch"]), int(p["ack_every"])
    nc = await _connect(p["url"])
    try:
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(name=stream, subjects=[subject], storage=StorageType.MEMORY)
        )
        config = ConsumerConfig(ack_policy=AckPolicy.ALL, max_ack_pending=int(p["prefetch"]) * 10)
        sub = await js.pull_subscribe(subject, durable="bench", stream=stream, config=config)
        ctx.ready()
        unacked = 0
        while not verifier.done and not ctx.stalled(verifier):
            try:
                msgs = await sub.fetch(batch, timeout=0.5)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            for msg in msgs:
                verifier.add(msg.data)
                unacked += 1
                if unacked >= ack_every:
                    await msg.ack()
                    unacked = 0
            if unacked and msgs:
                await msgs[-1].ack()
                unacked = 0
            ctx.progress(verifier.distinct)
        await js.delete_stream(stream)
    finally:
        await nc.close()
    return verifier.report()


# --- W2: core pub/sub ----------------------------------------------------------------


def w2_publisher(ctx: RoleContext) -> dict[str, Any]:
    return asyncio.run(_w2_publisher(ctx))


async def _w2_publisher(ctx: RoleContext) -> dict[str, Any]:
    p = ctx.params
    bodies = make_bodies(p["count"], p["body_size"])
    subject = f"{p['topic']}.a"
    nc = await _connect(p["url"])
    try:
        ctx.ready()
        await asyncio_wait_go(ctx)
        t_start = time.perf_counter()
        for i, body in enumerate(bodies):
            await nc.publish(subject, body)
            if i % 1000 == 0:
                ctx.check_deadline()
        await nc.flush(timeout=max(1, int(ctx.time_left())))
        t_end = time.perf_counter()
    finally:
        await nc.close()
    return {"t_start": t_start, "t_end": t_end, "sent": len(bodies)}


def w2_subscriber(ctx: RoleContext) -> dict[str, Any]:
    return asyncio.run(_w2_subscriber(ctx))


async def _w2_subscriber(ctx: RoleContext) -> dict[str, Any]:
    p = ctx.params
    verifier = Verifier(p["count"], p["body_size"])
    done = asyncio.Event()
    nc = await _connect(p["url"])
    try:

        async def on_message(msg: Any) -> None:
            verifier.add(msg.data)
            if verifier.distinct % 1000 == 0:
                ctx.progress(verifier.distinct)
            if verifier.done:
                done.set()

        sub = await nc.subscribe(
            f"{p['topic']}.*",
            cb=on_message,
            pending_msgs_limit=PENDING_MSGS,
            pending_bytes_limit=PENDING_BYTES,
        )
        await nc.flush()  # the server has the subscription before we say ready
        ctx.ready()
        await asyncio_wait_done(ctx, verifier, done)
        ctx.progress(verifier.distinct)
        await sub.unsubscribe()
    finally:
        await nc.close()
    return verifier.report()


# --- W4: request/reply ---------------------------------------------------------------


def w4_responder(ctx: RoleContext) -> dict[str, Any]:
    return asyncio.run(_w4_responder(ctx))


async def _w4_responder(ctx: RoleContext) -> dict[str, Any]:
    p = ctx.params
    served = 0
    nc = await _connect(p["url"])
    try:

        async def on_request(msg: Any) -> None:
            nonlocal served
            await nc.publish(msg.reply, msg.data)
            served += 1

        await nc.subscribe(
            p["subject"],
            cb=on_request,
            pending_msgs_limit=PENDING_MSGS,
            pending_bytes_limit=PENDING_BYTES,
        )
        await nc.flush()
        ctx.ready()
        await asyncio_wait_stop(ctx)
    finally:
        await nc.close()
    return {"served": served}


def w4_requester(ctx: RoleContext) -> dict[str, Any]:
    return asyncio.run(_w4_requester(ctx))


async def _w4_requester(ctx: RoleContext) -> dict[str, Any]:
    p = ctx.params
    warmup, sequential, concurrent = p["warmup"], p["sequential"], p["concurrent"]
    bodies = make_bodies(warmup + sequential + concurrent, p["body_size"])
    subject, timeout = p["subject"], float(p["request_timeout"])
    tally = RequesterTally()
    nc = await _connect(p["url"])
    try:
        ctx.ready()
        await asyncio_wait_go(ctx)
        for seq in range(warmup + sequential):
            t0 = time.perf_counter()
            try:
                reply = await nc.request(subject, bodies[seq], timeout=timeout)
            except Exception as exc:
                tally.error(exc)
                continue
            elapsed = time.perf_counter() - t0
            tally.sequential_reply(reply.data == bodies[seq], elapsed, seq >= warmup)
            ctx.progress(seq + 1)
            ctx.check_deadline()

        first = warmup + sequential
        pending = iter(range(first, first + concurrent))

        async def worker() -> None:
            for seq in pending:
                try:
                    reply = await nc.request(subject, bodies[seq], timeout=timeout)
                except Exception as exc:
                    tally.error(exc)
                    continue
                if reply.data != bodies[seq]:
                    tally.mismatches += 1
                tally.conc_count += 1
                if tally.conc_count % 500 == 0:
                    ctx.progress(first + tally.conc_count)
                if ctx.time_left() < 0:
                    return

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(int(p["concurrency"]))))
        tally.conc_elapsed = time.perf_counter() - t0
    finally:
        await nc.close()
    return tally.report()


# --- W5 --------------------------------------------------------------------------------


def w5_startup(ctx: RoleContext) -> dict[str, Any]:
    from benchmarks.startup import time_server_start

    p = ctx.params
    port = free_port()
    store = tempfile.mkdtemp(prefix="bench-nats-")
    url = f"nats://{HOST}:{port}"

    def first_op() -> None:
        asyncio.run(_connect_and_flush(url))

    ctx.ready()
    try:
        cmd = [p["binary"], "-a", HOST, "-p", str(port), "-js", "-sd", store]
        return time_server_start(cmd, first_op, Path(p["log_dir"]) / "nats-w5.log")
    finally:
        shutil.rmtree(store, ignore_errors=True)


async def _connect_and_flush(url: str) -> None:
    import nats

    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=1, max_reconnect_attempts=0)
    try:
        await nc.flush(timeout=1)
    finally:
        await nc.close()
