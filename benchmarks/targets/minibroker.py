"""minibroker itself, through its own clients (the Trio client for W1-W4).

Two targets share this module: ``minibroker`` (a ``minibroker serve``
subprocess with in-memory storage) and ``minibroker-durable`` (the same with
``--data-dir`` in a fresh temporary folder, and ``--fsync`` when the harness
is given one). The harness starts the server on a free port, waits for its
"listening on" line and stops it at the end.

How each workload drives it (the easy path of the client API, batched):

* W1: the consumer declares the queue (``durable=True`` for
  minibroker-durable) and iterates ``async with mb.consume(queue,
  prefetch=cfg.prefetch, ack_every=cfg.ack_every)``, calling ``d.ack()`` on
  each delivery (the client sends them in batches of ``ack_every``, the same
  cadence as RabbitMQ's multiple-acks here). The producer hands batches of
  ``cfg.batch`` to ``mb.queue_producer(queue, max_batch=cfg.batch)``
  (``put_many``), the public ordered, pipelined producer
  (client/producer.py), so both variants
  are confirmed publishes: the confirmed variant keeps at most
  ``cfg.confirm_window`` messages unconfirmed (as RabbitMQ's and NATS's do),
  the plain one the producer's default window of batches in flight.
* W2: each subscriber holds ``mb.subscribe("<topic>.*", buffer=...)`` with a
  buffer of at least the run's count and drains it with ``get_batch``; the
  publisher keeps ``PLAIN_PIPELINE`` ``publish_many`` batches of ``cfg.batch``
  in flight.
* W3: ``create_log`` then ``append_many`` batches of ``cfg.batch`` through
  ``mb.log_producer(log, max_batch=cfg.batch)`` (ordered batches, the
  producer's default window in flight, as librdkafka pipelines); a fresh
  process replays with ``tail(log, start=first_offset)``, taking records with
  ``get_batch(READ_BATCH)``.
* W4, as docs/request-reply.md tells users to write it, default settings,
  through each of its two documented ways (both rows are reported, each
  labelled by its client):
  ``await mb.serve(subject, handler)`` (a Trio nursery; handler returns the
  body) and ``await mb.request(subject, body, timeout=5)``, sequentially,
  then from 16 Trio tasks sharing one connection; and the blocking client of
  docs/examples/request_reply.py: ``with mb.serving(subject, handler)``
  (``serve`` on a thread, default ``workers``) and ``mb.request(...)``,
  sequentially, then from 16 threads sharing one client.
* W5: a fresh ``python -m minibroker serve`` on a free port, timed from launch
  to a successful ``ping`` through the blocking client; and, in a fresh
  process, ``open_broker()`` + ``broker.connect()`` + one ``ping``.

If ``import minibroker`` does not provide ``connect`` yet, the target is
skipped with a clear line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.child import (
    POLL_INTERVAL,
    RoleContext,
    trio_wait_go,
    trio_wait_stop,
    trio_watchdog,
)
from benchmarks.config import HOST
from benchmarks.payload import Verifier, batched, make_bodies
from benchmarks.stats import RequesterTally
from benchmarks.targets.base import Target, free_port, log_tail, stop_process, wait_for
from benchmarks.workloads import Impl

MODULE = __name__
REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
READY_LINE = "listening on"
PLAIN_PIPELINE = 4  # publish_many batches the W2 publisher keeps in flight
READ_BATCH = 10_000  # records taken per get_batch() in the W3 replay
TAIL_MAX_BYTES = 1024 * 1024  # bytes per `records` push of the W3 replay tail
SUBSCRIBER_BUFFER = 1_000_000  # W2 subscription buffer (messages), at least the run's count
BUSY_POLL_US = 300  # `serve --busy-poll-us` of the minibroker-busy-poll target (W4 only)


def server_command(
    port: int,
    data_dir: str | None = None,
    fsync: str | None = None,
    busy_poll_us: float = 0,
    amqp_port: int | None = None,
) -> list[str]:
    cmd = [sys.executable, "-m", "minibroker", "serve", "--port", str(port)]
    if amqp_port is not None:
        cmd += ["--amqp-port", str(amqp_port)]
    if data_dir is not None:
        cmd += ["--data-dir", data_dir]
    if fsync is not None:
        cmd += ["--fsync", fsync]
    if busy_poll_us:
        cmd += ["--busy-poll-us", f"{busy_poll_us:g}"]
    return cmd


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if x)
    return env


# Client methods each workload needs; a workload whose methods are missing is skipped.
REQUIRED_METHODS: dict[str, tuple[str, ...]] = {
    "w1": ("declare_queue", "put_many", "consume"),
    "w2": ("publish_many", "subscribe"),
    "w3": ("create_log", "append_many", "tail"),
    "w4": ("request", "respond"),
    "w5": ("ping",),
}


def client_problem() -> str | None:
    """None when the minibroker client API is importable, else why not."""
    try:
        import minibroker
    except ImportError as exc:
        return f"`import minibroker` failed ({exc})"
    missing = [
        name
        for name in ("connect", "connect_sync", "open_broker", "Client")
        if not hasattr(minibroker, name)
    ]
    if missing:
        names = ", ".join(f"minibroker.{name}" for name in missing)
        return f"the minibroker client is not there yet (no {names})"
    return None


def missing_methods(workload: str) -> list[str]:
    import minibroker

    return [m for m in REQUIRED_METHODS.get(workload, ()) if not hasattr(minibroker.Client, m)]


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class MinibrokerTarget(Target):
    title = "minibroker"

    def __init__(
        self, *args: Any, durable: bool = False, busy_poll_us: float = 0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.durable = durable
        self.busy_poll_us = busy_poll_us
        if busy_poll_us:
            self.name = "minibroker-busy-poll"
        else:
            self.name = "minibroker-durable" if durable else "minibroker"
        self.proc: subprocess.Popen[bytes] | None = None
        self.data_dir: str | None = None
        self.port = 0
        #: More ``minibroker serve`` flags (a subclass adds its front end's port).
        self.extra_args: list[str] = []
        #: Also serve AMQP 0-9-1 on this port (the minibroker-amqp target sets it).
        self.amqp_port: int | None = None

    @property
    def url(self) -> str:
        return f"minibroker://{HOST}:{self.port}"

    def setup(self) -> str | None:
        problem = client_problem()
        if problem:
            return problem
        self.port = free_port()
        if self.durable:
            self.data_dir = tempfile.mkdtemp(prefix="bench-minibroker-")
        log_path = self.log_dir / f"{self.name}.log"
        cmd = server_command(
            self.port, self.data_dir, self.cfg.fsync, self.busy_poll_us, self.amqp_port
        )
        cmd += self.extra_args
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=server_env()
            )

        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                return True
            try:
                return READY_LINE in log_path.read_text(errors="replace")
            except OSError:
                return False

        if not wait_for(ready, START_TIMEOUT):
            return f"`minibroker serve` printed no '{READY_LINE}' within {START_TIMEOUT:.0f}s"
        if self.proc.poll() is not None:
            return (
                f"`minibroker serve` exited with code {self.proc.returncode}: {log_tail(log_path)}"
            )
        return None

    def teardown(self) -> None:
        stop_process(self.proc)
        self.proc = None
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def versions(self) -> dict[str, str]:
        import minibroker

        version = getattr(minibroker, "__version__", None) or "0.1.0"
        return {"minibroker": f"{version} ({_git_commit()})"}

    def notes(self) -> list[str]:
        c = self.cfg
        storage = (
            f"`--data-dir` in a temporary folder{f', --fsync {c.fsync}' if c.fsync else ''}"
            if self.durable
            else "in-memory storage"
        )
        if self.busy_poll_us:
            return [
                f"`minibroker serve --busy-poll-us {self.busy_poll_us:g}` on a free port, "
                f"{storage}: the broker polls for {self.busy_poll_us:g} µs after each input "
                "instead of sleeping (docs/operations.md); W4 only, driven as for minibroker."
            ]
        from minibroker.client.producer import DEFAULT_MAX_IN_FLIGHT

        return [
            f"`minibroker serve` on a free port, {storage}; Trio client (`minibroker.connect`).",
            f"W1: {'durable ' if self.durable else ''}queue; `consume(prefetch={c.prefetch}, "
            f"ack_every={c.ack_every})` with `ack()` per delivery (the client sends them in "
            f"batches); `queue_producer(max_batch={c.batch})` fed `put_many` batches, "
            f"always confirmed: at most {c.confirm_window} unconfirmed (confirmed variant) or "
            f"the producer's default {DEFAULT_MAX_IN_FLIGHT} batches in flight (plain variant).",
            f"W2: `connect(max_pending=count)`, `subscribe('<topic>.*', buffer>=count)` "
            f"drained with `get_batch`; `publish_many` batches of {c.batch}, "
            f"{PLAIN_PIPELINE} in flight.",
            f"W3: `log_producer(max_batch={c.batch})` fed `append_many` batches, the "
            f"producer's default {DEFAULT_MAX_IN_FLIGHT} batches in flight; "
            f"replay with `tail(start=first offset, max_bytes={TAIL_MAX_BYTES})`.",
            "W4, as docs/request-reply.md writes it (default settings): Trio client, "
            "`serve(subject, handler)` and `request(timeout=5)`, 16 in flight = 16 Trio tasks "
            "on one connection; blocking client (docs/examples/request_reply.py), "
            "`with serving(subject, handler)` and `request(timeout=5)`, 16 in flight = 16 "
            "threads sharing one client.",
            "W5: launch to a `ping` through the blocking client; embedded: `open_broker()` + "
            "`connect()` + `ping()` in a fresh process (import time reported apart).",
        ]

    def server_pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def unavailable(self, workload: str) -> str | None:
        if self.busy_poll_us and workload != "w4":
            return "busy polling is a latency setting: measured on W4 only"
        missing = missing_methods(workload)
        if missing:
            return f"the client has no {', '.join(missing)} yet"
        return None

    def impls(self, workload: str) -> list[Impl]:
        params = {"url": self.url, "durable": self.durable}
        client = "minibroker Trio client"
        roles = {
            "w1": {"producer": "w1_producer", "consumer": "w1_consumer"},
            "w2": {"publisher": "w2_publisher", "subscriber": "w2_subscriber"},
            "w3": {"appender": "w3_appender", "replayer": "w3_replayer"},
            "w4": {"requester": "w4_requester", "responder": "w4_responder"},
        }
        if workload == "w4":
            blocking = {"requester": "w4_blocking_requester", "responder": "w4_blocking_responder"}
            return [
                Impl(client, {k: f"{MODULE}:{v}" for k, v in roles[workload].items()}, params),
                Impl(
                    "minibroker blocking client",
                    {k: f"{MODULE}:{v}" for k, v in blocking.items()},
                    params,
                ),
            ]
        if workload in roles:
            return [Impl(client, {k: f"{MODULE}:{v}" for k, v in roles[workload].items()}, params)]
        if workload == "w5":
            variants: tuple[str, ...] = ("startup_server", "idle_rss")
            if not self.durable:
                variants += ("startup_embedded",)
            return [
                Impl(
                    "minibroker serve + blocking client; embedded: open_broker",
                    {"startup": f"{MODULE}:w5_startup"},
                    {
                        "log_dir": str(self.log_dir),
                        "durable": self.durable,
                        "fsync": self.cfg.fsync,
                    },
                    variants=variants,
                )
            ]
        return []


# --- W1 ---------------------------------------------------------------------------------


def w1_producer(ctx: RoleContext) -> dict[str, Any]:
    import trio

    return trio.run(_w1_producer, ctx)


async def _w1_producer(ctx: RoleContext) -> dict[str, Any]:
    import trio

    import minibroker

    p = ctx.params
    bodies = make_bodies(p["count"], p["body_size"])
    batch = int(p["batch"])
    queue = p["queue"]
    # The public producer (client/producer.py): batches of ``batch``, ordered,
    # with its default window of batches in flight, or at most
    # ``confirm_window`` messages unconfirmed for the confirmed variant.
    window = {"max_in_flight": max(1, int(p["confirm_window"]) // batch)} if p["confirmed"] else {}
    async with minibroker.connect(p["url"]) as mb:
        await mb.declare_queue(queue, durable=bool(p["durable"]))
        ctx.ready()
        await trio_wait_go(ctx)
        t_start = time.perf_counter()
        with trio.fail_after(max(0.0, ctx.time_left())):
            async with mb.queue_producer(queue, max_batch=batch, **window) as producer:
                for chunk in batched(bodies, batch):
                    await producer.put_many(chunk)
        t_end = time.perf_counter()
    return {"t_start": t_start, "t_end": t_end, "sent": len(bodies)}


def w1_consumer(ctx: RoleContext) -> dict[str, Any]:
    import trio

    return trio.run(_w1_consumer, ctx)


async def _w1_consumer(ctx: RoleContext) -> dict[str, Any]:
    import trio

    import minibroker

    p = ctx.params
    verifier = Verifier(p["count"], p["body_size"])
    queue = p["queue"]
    async with minibroker.connect(p["url"]) as mb:
        await mb.declare_queue(queue, durable=bool(p["durable"]))
        ctx.ready()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio_watchdog, ctx, verifier, nursery.cancel_scope)
            consumer = mb.consume(queue, prefetch=int(p["prefetch"]), ack_every=int(p["ack_every"]))
            async with consumer as deliveries:
                async for delivery in deliveries:
                    verifier.add(delivery.body)
                    await delivery.ack()
                    if verifier.distinct % 1000 == 0:
                        ctx.progress(verifier.distinct)
                    if verifier.done:
                        break
            nursery.cancel_scope.cancel()
        ctx.progress(verifier.distinct)
        await mb.delete_queue(queue)
    return verifier.report()


# --- W2 ---------------------------------------------------------------------------------


def w2_publisher(ctx: RoleContext) -> dict[str, Any]:
    import trio

    return trio.run(_w2_publisher, ctx)


async def _w2_publisher(ctx: RoleContext) -> dict[str, Any]:
    import trio

    import minibroker

    p = ctx.params
    bodies = make_bodies(p["count"], p["body_size"])
    topic = f"{p['topic']}.a"
    async with minibroker.connect(p["url"]) as mb:
        ctx.ready()
        await trio_wait_go(ctx)
        t_start = time.perf_counter()
        window = trio.Semaphore(PLAIN_PIPELINE)  # publish_many batches in flight

        async def publish(chunk: list[bytes]) -> None:
            try:
                await mb.publish_many(topic, chunk)
            finally:
                window.release()

        with trio.fail_after(max(0.0, ctx.time_left())):
            async with trio.open_nursery() as nursery:
                for chunk in batched(bodies, int(p["batch"])):
                    await window.acquire()
                    nursery.start_soon(publish, chunk)
        t_end = time.perf_counter()
    return {"t_start": t_start, "t_end": t_end, "sent": len(bodies)}


def w2_subscriber(ctx: RoleContext) -> dict[str, Any]:
    import trio

    return trio.run(_w2_subscriber, ctx)


async def _w2_subscriber(ctx: RoleContext) -> dict[str, Any]:
    import trio

    import minibroker

    p = ctx.params
    verifier = Verifier(p["count"], p["body_size"])
    # A subscriber buffer as large as the run, like the raised pending limits given to
    # NATS: neither the broker (``buffer``) nor the client (``max_pending``, 10,000 by
    # default) may drop for a subscriber that is briefly behind its own reader.
    buffer = max(SUBSCRIBER_BUFFER, int(p["count"]))
    async with (
        minibroker.connect(p["url"], max_pending=buffer) as mb,
        mb.subscribe(f"{p['topic']}.*", buffer=buffer) as sub,
    ):
        ctx.ready()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio_watchdog, ctx, verifier, nursery.cancel_scope)
            while not verifier.done:
                for message in await sub.get_batch(int(p["batch"])):
                    verifier.add(message.body)
                ctx.progress(verifier.distinct)
            nursery.cancel_scope.cancel()
        dropped = int(getattr(sub, "dropped", 0) or 0)
    ctx.progress(verifier.distinct)
    remark = f"the broker dropped {dropped} messages for this subscriber" if dropped else ""
    return {**verifier.report(), "remark": remark}


# --- W3 ---------------------------------------------------------------------------------


def w3_appender(ctx: RoleContext) -> dict[str, Any]:
    import trio

    return trio.run(_w3_appender, ctx)


async def _w3_appender(ctx: RoleContext) -> dict[str, Any]:
    import trio

    import minibroker

    p = ctx.params
    bodies = make_bodies(p["count"], p["body_size"])
    log = p["log"]
    async with minibroker.connect(p["url"]) as mb:
        await mb.create_log(log)
        ctx.ready()
        await trio_wait_go(ctx)
        t_start = time.perf_counter()
        with trio.fail_after(max(0.0, ctx.time_left())):
            # The public producer: ordered batches of ``batch``, its default window.
            async with mb.log_producer(log, max_batch=int(p["batch"])) as producer:
                chunks = batched(bodies, int(p["batch"]))
                first = await producer.append_many(next(chunks))
                done = 0
                for chunk in chunks:
                    await producer.append_many(chunk)
                    done += len(chunk)
                    if done % 10_000 < len(chunk):
                        ctx.progress(done)
        t_end = time.perf_counter()
        first_offset = int(await first)
    return {
        "t_start": t_start,
        "t_end": t_end,
        "sent": len(bodies),
        "first_offset": first_offset,
    }


def w3_replayer(ctx: RoleContext) -> dict[str, Any]:
    import trio

    return trio.run(_w3_replayer, ctx)


async def _w3_replayer(ctx: RoleContext) -> dict[str, Any]:
    import trio

    import minibroker

    p = ctx.params
    verifier = Verifier(p["count"], p["body_size"])
    offset = int(p.get("start", 0))
    end = offset + int(p["count"])
    async with minibroker.connect(p["url"]) as mb:
        ctx.ready()
        await trio_wait_go(ctx)
        t_start = time.perf_counter()
        with trio.move_on_after(max(0.0, ctx.time_left())):
            # A tail replays from `start` with flow control (the broker pushes
            # the next range while this process decodes the last one), then
            # would follow live appends: the consumer API for a replay.
            async with mb.tail(p["log"], start=offset, max_bytes=TAIL_MAX_BYTES) as tail:
                while offset < end:
                    for record in await tail.get_batch(READ_BATCH):
                        verifier.add(record.body)
                        offset = int(record.offset) + 1
                    ctx.progress(verifier.distinct)
    return {**verifier.report(), "t_start": t_start, "remark": f"replay stopped at offset {offset}"}


# --- W4 ---------------------------------------------------------------------------------


def w4_responder(ctx: RoleContext) -> dict[str, Any]:
    import trio

    return trio.run(_w4_responder, ctx)


async def _w4_responder(ctx: RoleContext) -> dict[str, Any]:
    import trio

    import minibroker

    served = 0
    p = ctx.params

    async def echo(request: Any) -> bytes:
        nonlocal served
        served += 1
        body: bytes = request.body
        return body

    async with minibroker.connect(p["url"]) as mb, trio.open_nursery() as nursery:
        await nursery.start(mb.serve, p["subject"], echo)
        ctx.ready()
        await trio_wait_stop(ctx)
        nursery.cancel_scope.cancel()
    return {"served": served}


def w4_blocking_responder(ctx: RoleContext) -> dict[str, Any]:
    """docs/examples/request_reply.py's responder: ``serve`` on a thread, default workers."""
    import itertools

    import minibroker

    served = itertools.count()  # next() is atomic: handlers run on several threads

    def echo(request: Any) -> bytes:
        next(served)
        body: bytes = request.body
        return body

    with minibroker.connect_sync(ctx.params["url"]) as mb, mb.serving(ctx.params["subject"], echo):
        ctx.ready()
        while not ctx.stop_requested() and ctx.time_left() > 0:
            time.sleep(POLL_INTERVAL)
    return {"served": next(served)}


def w4_blocking_requester(ctx: RoleContext) -> dict[str, Any]:
    """``mb.request`` from the blocking client: sequentially, then from 16 threads."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import minibroker

    p = ctx.params
    warmup, sequential, concurrent = p["warmup"], p["sequential"], p["concurrent"]
    bodies = make_bodies(warmup + sequential + concurrent, p["body_size"])
    subject, timeout = p["subject"], float(p["request_timeout"])
    tally = RequesterTally()
    counting = threading.Lock()

    with minibroker.connect_sync(p["url"]) as mb:
        ctx.ready()
        ctx.wait_go()
        for seq in range(warmup + sequential):
            t0 = time.perf_counter()
            try:
                reply = mb.request(subject, bodies[seq], timeout=timeout)
            except Exception as exc:
                tally.error(exc)
                continue
            elapsed = time.perf_counter() - t0
            tally.sequential_reply(reply.body == bodies[seq], elapsed, seq >= warmup)
            ctx.progress(seq + 1)
            ctx.check_deadline()

        first = warmup + sequential
        pending = iter(range(first, first + concurrent))  # next() is atomic: shared by threads

        def worker() -> None:
            for seq in pending:
                if ctx.time_left() <= 0:
                    return
                try:
                    reply = mb.request(subject, bodies[seq], timeout=timeout)
                except Exception as exc:
                    with counting:
                        tally.error(exc)
                    continue
                with counting:
                    if reply.body != bodies[seq]:
                        tally.mismatches += 1
                    tally.conc_count += 1
                    if tally.conc_count % 500 == 0:
                        ctx.progress(first + tally.conc_count)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(int(p["concurrency"])) as pool:
            for _ in range(int(p["concurrency"])):
                pool.submit(worker)
        tally.conc_elapsed = time.perf_counter() - t0
    return tally.report()


def w4_requester(ctx: RoleContext) -> dict[str, Any]:
    import trio

    return trio.run(_w4_requester, ctx)


async def _w4_requester(ctx: RoleContext) -> dict[str, Any]:
    import trio

    import minibroker

    p = ctx.params
    warmup, sequential, concurrent = p["warmup"], p["sequential"], p["concurrent"]
    bodies = make_bodies(warmup + sequential + concurrent, p["body_size"])
    subject, timeout = p["subject"], float(p["request_timeout"])
    tally = RequesterTally()

    async with minibroker.connect(p["url"]) as mb:
        ctx.ready()
        await trio_wait_go(ctx)
        for seq in range(warmup + sequential):
            t0 = time.perf_counter()
            try:
                reply = await mb.request(subject, bodies[seq], timeout=timeout)
            except Exception as exc:
                tally.error(exc)
                continue
            elapsed = time.perf_counter() - t0
            tally.sequential_reply(reply.body == bodies[seq], elapsed, seq >= warmup)
            ctx.progress(seq + 1)
            ctx.check_deadline()

        first = warmup + sequential
        pending = iter(range(first, first + concurrent))

        async def worker() -> None:
            for seq in pending:
                try:
                    reply = await mb.request(subject, bodies[seq], timeout=timeout)
                except Exception as exc:
                    tally.error(exc)
                    continue
                if reply.body != bodies[seq]:
                    tally.mismatches += 1
                tally.conc_count += 1
                if tally.conc_count % 500 == 0:
                    ctx.progress(first + tally.conc_count)

        t0 = time.perf_counter()
        with trio.move_on_after(max(0.0, ctx.time_left())):
            async with trio.open_nursery() as nursery:
                for _ in range(int(p["concurrency"])):
                    nursery.start_soon(worker)
        tally.conc_elapsed = time.perf_counter() - t0
    return tally.report()


# --- W5 ---------------------------------------------------------------------------------


def w5_startup(ctx: RoleContext) -> dict[str, Any]:
    from benchmarks.startup import time_server_start

    p = ctx.params
    ctx.ready()

    # embedded first, in this fresh process: import, then open_broker() to a first put
    metrics: dict[str, float] = {}
    extra: dict[str, float] = {}
    if not p["durable"]:
        import trio

        t0 = time.perf_counter()
        import minibroker

        # The package exports lazily: touching open_broker imports the
        # embedded broker, the server and the client. That is import time,
        # reported apart from opening a broker.
        open_broker = minibroker.open_broker
        extra["import_ms"] = (time.perf_counter() - t0) * 1000
        metrics["startup_embedded"] = trio.run(_embedded_first_op, open_broker)

    import minibroker

    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="bench-minibroker-w5-") if p["durable"] else None
    url = f"minibroker://{HOST}:{port}"

    def first_op() -> None:
        with minibroker.connect_sync(url) as mb:
            mb.ping()

    try:
        measured = time_server_start(
            server_command(port, data_dir, p.get("fsync")),
            first_op,
            Path(p["log_dir"]) / "minibroker-w5.log",
            cwd=str(REPO_ROOT),
            env=server_env(),
        )
    finally:
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    metrics.update(measured["metrics"])
    extra.update(measured["extra"])
    return {"metrics": metrics, "extra": extra}


async def _embedded_first_op(open_broker: Any) -> float:
    t0 = time.perf_counter()
    async with open_broker() as broker, broker.connect() as mb:
        await mb.ping()
        elapsed = (time.perf_counter() - t0) * 1000
    return elapsed
