"""Crash campaign through the front ends: kill -9 a ``minibroker serve --data-dir``
loaded by pika (AMQP), confluent-kafka and boto3 (SQS), again and again.

benchmarks/crash_campaign.py does this with the native client; this one uses
the clients users' applications use, on fixed ports (so that a long-lived
Kafka producer reconnects to the restarted broker by itself). Each cycle
starts the server on the same data directory, runs every load for a random
time, and SIGKILLs it. A ledger records what each client was told:

* **AMQP**: a publisher in confirm mode publishes persistent messages with
  headers and properties to the durable topic exchange ``dx`` (mandatory, so
  a lost binding shows up as a return); a consumer on the durable queue ``dq``
  (TTL, DLX and max-length arguments) acks most deliveries, leaves some
  unacked and rejects some to the dead-letter queue ``dead``. Checked: every
  confirmed message is in ``dq`` or ``dead`` at the end or was acked; a
  message delivered before is flagged ``redelivered``; properties and headers
  intact; durable exchange, queues, bindings and arguments there after every
  restart, the non-durable exchange gone.
* **Kafka**: an idempotent producer (acks=all) that lives across the kills
  writes to topic ``kt`` (3 partitions); a consumer group commits. Checked:
  every acknowledged record at its offset, ids stored twice (a retry after a
  restart), committed offsets never going back, the partition count.
* **SQS**: sends to a standard and a FIFO queue; a receiver deletes most of
  what it gets and keeps the others' handles, deleting with them after the
  next restart (stale handles). Checked: every answered send is received at
  the end or was deleted (a delete the kill cut short may have been done);
  nothing whose delete was answered comes back.

Run: ``python -m benchmarks.frontend_crash_campaign --cycles 200``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.broker_process import BrokerProcess

DQ_ARGS = {
    "x-message-ttl": 3_600_000,
    "x-dead-letter-exchange": "dlx",
    "x-max-length": 1_000_000,
}
TOPIC = "kt"
PARTITIONS = 3
GROUP = "kg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Ledger:
    """What the clients were told, across every cycle."""

    amqp_sent: set[int] = field(default_factory=set)
    amqp_confirmed: set[int] = field(default_factory=set)
    amqp_returned: int = 0
    amqp_delivered: Counter[int] = field(default_factory=Counter)
    amqp_acked: set[int] = field(default_factory=set)
    amqp_rejected: set[int] = field(default_factory=set)
    amqp_not_flagged: int = 0
    amqp_bad_props: int = 0
    amqp_objects_missing: list[str] = field(default_factory=list)
    kafka_acked: dict[tuple[int, int], int] = field(default_factory=dict)
    kafka_committed: dict[int, int] = field(default_factory=dict)
    kafka_commits_back: list[str] = field(default_factory=list)
    kafka_fatal: int = 0
    kafka_partitions_seen: list[int] = field(default_factory=list)
    sqs_confirmed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    sqs_deleted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    sqs_delete_tried: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    sqs_kept: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    sqs_stale_deletes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    stuck_threads: int = 0
    stuck_names: Counter[str] = field(default_factory=Counter)
    phase_seconds: list[list[float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, where: str, exc: BaseException) -> None:
        with self.lock:
            self.errors[f"{where}: {type(exc).__name__}"] += 1


class Ports:
    def __init__(self) -> None:
        self.amqp, self.kafka, self.sqs = free_port(), free_port(), free_port()

    def args(self) -> list[str]:
        return [
            "--amqp-port",
            str(self.amqp),
            "--kafka-port",
            str(self.kafka),
            "--sqs-port",
            str(self.sqs),
            "--kafka-partitions",
            str(PARTITIONS),
        ]


# ------------------------------------------------------------------ AMQP


def amqp_connect(ports: Ports) -> Any:
    import pika

    params = pika.ConnectionParameters(
        "127.0.0.1",
        ports.amqp,
        connection_attempts=1,
        socket_timeout=5,
        blocked_connection_timeout=30,
    )
    return pika.BlockingConnection(params)


def amqp_setup(ports: Ports, ledger: Ledger, cycle: int) -> None:
    """Check what must have survived the last kill, then (re)declare it all."""
    import pika

    with contextlib.closing(amqp_connect(ports)) as conn:
        ch = conn.channel()
        if cycle > 0:
            for kind, name in (
                ("exchange", "dx"),
                ("exchange", "dlx"),
                ("queue", "dq"),
                ("queue", "dead"),
            ):
                try:
                    if kind == "exchange":
                        ch.exchange_declare(name, passive=True)
                    else:
                        ch.queue_declare(name, passive=True)
                except pika.exceptions.ChannelClosedByBroker as e:
                    ledger.amqp_objects_missing.append(f"cycle {cycle}: {name} {e}")
                    ch = conn.channel()
            try:
                ch.exchange_declare("tx", passive=True)
                ledger.amqp_objects_missing.append(f"cycle {cycle}: non-durable tx survived")
            except pika.exceptions.ChannelClosedByBroker:
                ch = conn.channel()
        ch.exchange_declare("dx", "topic", durable=True)
        ch.exchange_declare("dlx", "fanout", durable=True)
        ch.exchange_declare("tx", "fanout", durable=False)
        ch.queue_declare("dq", durable=True, arguments=DQ_ARGS)
        ch.queue_declare("dead", durable=True)
        if cycle == 0:
            ch.queue_bind("dq", "dx", "k.#")
            ch.queue_bind("dead", "dlx")


def amqp_publisher(ports: Ports, ledger: Ledger, stop: threading.Event, ids: Any) -> None:
    import pika

    try:
        conn = amqp_connect(ports)
        ch = conn.channel()
        ch.confirm_delivery()
        while not stop.is_set():
            n = next(ids)
            props = pika.BasicProperties(
                delivery_mode=2,
                content_type="application/x-test",
                message_id=str(n),
                correlation_id=f"c{n}",
                headers={"id": n, "k": "v", "nested": {"a": [1, "x"]}},
            )
            with ledger.lock:
                ledger.amqp_sent.add(n)
            try:
                ch.basic_publish("dx", f"k.{n % 5}", f"m{n}".encode(), props, mandatory=True)
            except pika.exceptions.UnroutableError:
                with ledger.lock:
                    ledger.amqp_returned += 1
                continue
            with ledger.lock:
                ledger.amqp_confirmed.add(n)
    except Exception as e:
        if not stop.is_set():
            ledger.error("amqp publisher", e)


def amqp_props_ok(n: int, body: bytes, props: Any) -> bool:
    return (
        body == f"m{n}".encode()
        and props.delivery_mode == 2
        and props.content_type == "application/x-test"
        and props.message_id == str(n)
        and props.correlation_id == f"c{n}"
        and props.headers == {"id": n, "k": "v", "nested": {"a": [1, b"x"]}}
    ) or (
        body == f"m{n}".encode()
        and props.headers is not None
        and props.headers.get("nested") == {"a": [1, "x"]}
        and props.headers.get("id") == n
    )


def amqp_consumer(ports: Ports, ledger: Ledger, stop: threading.Event, rng: random.Random) -> None:
    try:
        conn = amqp_connect(ports)
        ch = conn.channel()
        ch.basic_qos(prefetch_count=50)
        for method, props, body in ch.consume("dq", inactivity_timeout=0.2):
            if stop.is_set():
                break
            if method is None:
                continue
            n = int(props.message_id)
            record_amqp_delivery(ledger, n, method.redelivered, body, props)
            roll = rng.random()
            if roll < 0.08:
                continue  # left unacked: comes back after the kill
            if roll < 0.11:
                ch.basic_reject(method.delivery_tag, requeue=False)
                with ledger.lock:
                    ledger.amqp_rejected.add(n)
                continue
            ch.basic_ack(method.delivery_tag)
            with ledger.lock:
                ledger.amqp_acked.add(n)
    except Exception as e:
        if not stop.is_set():
            ledger.error("amqp consumer", e)


def record_amqp_delivery(
    ledger: Ledger, n: int, redelivered: bool, body: bytes, props: Any
) -> None:
    with ledger.lock:
        if ledger.amqp_delivered[n] and not redelivered:
            ledger.amqp_not_flagged += 1
        ledger.amqp_delivered[n] += 1
        if not amqp_props_ok(n, body, props):
            ledger.amqp_bad_props += 1


# ------------------------------------------------------------------ Kafka


class KafkaProducerLoad:
    """One idempotent producer for the whole campaign: it retries across kills."""

    def __init__(self, ports: Ports, ledger: Ledger) -> None:
        self.ports, self.ledger = ports, ledger
        self.producer = self._new()
        self.fatal = False

    def _new(self) -> Any:
        from confluent_kafka import Producer

        return Producer(
            {
                "bootstrap.servers": f"127.0.0.1:{self.ports.kafka}",
                "enable.idempotence": True,
                "acks": "all",
                "message.timeout.ms": 600_000,
                "linger.ms": 5,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 200,
                "error_cb": self._on_error,
                "log_level": 0,
            }
        )

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self.fatal = True

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            with self.ledger.lock:
                self.ledger.kafka_acked[(msg.partition(), msg.offset())] = int(msg.value())

    def run(self, stop: threading.Event, ids: Any) -> None:
        while not stop.is_set():
            if self.fatal:
                self.ledger.kafka_fatal += 1
                self.producer.flush(0)
                self.producer = self._new()
                self.fatal = False
            n = next(ids)
            try:
                self.producer.produce(
                    TOPIC, str(n).encode(), key=str(n).encode(), on_delivery=self._delivered
                )
            except BufferError:
                self.producer.poll(0.05)
            self.producer.poll(0.002)


def kafka_consumer(ports: Ports, ledger: Ledger, stop: threading.Event) -> None:
    from confluent_kafka import Consumer, TopicPartition

    try:
        c = Consumer(
            {
                "bootstrap.servers": f"127.0.0.1:{ports.kafka}",
                "group.id": GROUP,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "reconnect.backoff.max.ms": 200,
                "log_level": 0,
            }
        )
        c.subscribe([TOPIC])
        seen = 0
        while not stop.is_set():
            msg = c.poll(0.1)
            if msg is None or msg.error():
                continue
            seen += 1
            if seen % 20 == 0:
                done = c.commit(asynchronous=False)
                with ledger.lock:
                    for tp in done:
                        if tp.error is None and tp.offset >= 0:
                            before = ledger.kafka_committed.get(tp.partition, -1)
                            ledger.kafka_committed[tp.partition] = max(before, tp.offset)
        del TopicPartition
        # Closing waits for the dead broker's group coordinator: do it aside.
        threading.Thread(target=c.close, daemon=True).start()
    except Exception as e:
        if not stop.is_set():
            ledger.error("kafka consumer", e)


def kafka_check_state(ports: Ports, ledger: Ledger, cycle: int) -> None:
    """After a restart: the topic's partitions and the group's committed offsets."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{ports.kafka}", "log_level": 0})
    if cycle == 0:
        for f in admin.create_topics([NewTopic(TOPIC, PARTITIONS)]).values():
            with contextlib.suppress(Exception):
                f.result(30)
    meta = admin.list_topics(TOPIC, timeout=30)
    ledger.kafka_partitions_seen.append(len(meta.topics[TOPIC].partitions))
    c = Consumer(
        {"bootstrap.servers": f"127.0.0.1:{ports.kafka}", "group.id": GROUP, "log_level": 0}
    )
    try:
        for tp in c.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=30):
            want = ledger.kafka_committed.get(tp.partition, -1)
            if want >= 0 and tp.offset < want:
                ledger.kafka_commits_back.append(
                    f"cycle {cycle} p{tp.partition}: {tp.offset} < {want}"
                )
    finally:
        c.close()


# ------------------------------------------------------------------ SQS


def sqs_client(ports: Ports) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{ports.sqs}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}, connect_timeout=2, read_timeout=10),
    )


SQS_QUEUES = ("sq", "sf.fifo")


def sqs_setup(ports: Ports) -> dict[str, str]:
    sqs = sqs_client(ports)
    return {
        "sq": sqs.create_queue(QueueName="sq")["QueueUrl"],
        "sf.fifo": sqs.create_queue(QueueName="sf.fifo", Attributes={"FifoQueue": "true"})[
            "QueueUrl"
        ],
    }


def sqs_sender(
    ports: Ports, ledger: Ledger, stop: threading.Event, ids: Any, urls: dict[str, str]
) -> None:
    sqs = sqs_client(ports)
    try:
        while not stop.is_set():
            n = next(ids)
            name = SQS_QUEUES[n % 2]
            extra = (
                {"MessageGroupId": f"g{n % 4}", "MessageDeduplicationId": f"d{n}"}
                if name.endswith(".fifo")
                else {}
            )
            sqs.send_message(QueueUrl=urls[name], MessageBody=f"s{n}", **extra)
            with ledger.lock:
                ledger.sqs_confirmed[name].add(f"s{n}")
    except Exception as e:
        if not stop.is_set():
            ledger.error("sqs sender", e)


def sqs_receiver(
    ports: Ports, ledger: Ledger, stop: threading.Event, rng: random.Random, urls: dict[str, str]
) -> None:
    sqs = sqs_client(ports)
    try:
        # Handles kept from before the last kill: deleted with after the first
        # receipts of this run (stale handles).
        stale = {name: ledger.sqs_kept.pop(name, []) for name in SQS_QUEUES}
        while not stop.is_set():
            for name in SQS_QUEUES:
                got = sqs.receive_message(
                    QueueUrl=urls[name], MaxNumberOfMessages=10, VisibilityTimeout=3600
                )
                for m in got.get("Messages", []):
                    if rng.random() < 0.1:
                        ledger.sqs_kept[name].append(f"{m['Body']}\t{m['ReceiptHandle']}")
                        continue
                    # A delete cut short by the kill may have been done and synced
                    # (only its answer was lost): the message may be gone.
                    with ledger.lock:
                        ledger.sqs_delete_tried[name].add(m["Body"])
                    sqs.delete_message(QueueUrl=urls[name], ReceiptHandle=m["ReceiptHandle"])
                    with ledger.lock:
                        ledger.sqs_deleted[name].add(m["Body"])
                while stale[name]:
                    _, handle = stale[name].pop().split("\t", 1)
                    sqs.delete_message(QueueUrl=urls[name], ReceiptHandle=handle)
                    ledger.sqs_stale_deletes += 1
    except Exception as e:
        if not stop.is_set():
            ledger.error("sqs receiver", e)


# ------------------------------------------------------------------ campaign


def counter(start: int) -> Any:
    lock = threading.Lock()
    value = [start]

    def next_id() -> int:
        with lock:
            value[0] += 1
            return value[0]

    class It:
        def __next__(self) -> int:
            return next_id()

    return It()


def run_cycle(
    cycle: int,
    data_dir: Path,
    ports: Ports,
    ledger: Ledger,
    kafka: list[KafkaProducerLoad],
    rng: random.Random,
    ids: Any,
    max_run: float,
) -> None:
    marks = [time.monotonic()]
    broker = BrokerProcess.start(data_dir, *ports.args())
    try:
        marks.append(time.monotonic())
        amqp_setup(ports, ledger, cycle)
        kafka_check_state(ports, ledger, cycle)
        urls = sqs_setup(ports)
        marks.append(time.monotonic())
        if not kafka:
            kafka.append(KafkaProducerLoad(ports, ledger))
        stop = threading.Event()
        threads = [
            threading.Thread(target=amqp_publisher, args=(ports, ledger, stop, ids)),
            threading.Thread(
                target=amqp_consumer, args=(ports, ledger, stop, random.Random(rng.random()))
            ),
            threading.Thread(target=kafka[0].run, args=(stop, ids)),
            threading.Thread(target=kafka_consumer, args=(ports, ledger, stop)),
            threading.Thread(target=sqs_sender, args=(ports, ledger, stop, ids, urls)),
            threading.Thread(
                target=sqs_receiver, args=(ports, ledger, stop, random.Random(rng.random()), urls)
            ),
        ]
        for t in threads:
            t.daemon = True
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.2, max_run))
        broker.kill()
        stop.set()
        marks.append(time.monotonic())
        deadline = time.monotonic() + 5
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        ledger.stuck_threads += sum(t.is_alive() for t in threads)
        ledger.stuck_names.update(t._target.__name__ for t in threads if t.is_alive())  # type: ignore[attr-defined]
        marks.append(time.monotonic())
        ledger.phase_seconds.append([round(b - a, 2) for a, b in itertools.pairwise(marks)])
    finally:
        broker.kill()


def final_check(
    data_dir: Path, ports: Ports, ledger: Ledger, kafka: list[KafkaProducerLoad]
) -> dict[str, Any]:
    """Restart once more, let the producer finish its retries, drain everything."""
    import pika
    from confluent_kafka import Consumer, TopicPartition

    with BrokerProcess.start(data_dir, *ports.args()):
        left = kafka[0].producer.flush(120) if kafka else 0
        report: dict[str, Any] = {"kafka_unflushed": left}
        # AMQP: drain dq and dead.
        with contextlib.closing(amqp_connect(ports)) as conn:
            ch = conn.channel()
            try:
                ch.queue_declare("dq", durable=True, arguments={**DQ_ARGS, "x-max-length": 5})
                report["amqp_args_checked"] = False
            except pika.exceptions.ChannelClosedByBroker as e:
                report["amqp_args_checked"] = e.reply_code == 406
                ch = conn.channel()
            drained: Counter[int] = Counter()
            dead: set[int] = set()
            for queue in ("dq", "dead"):
                while True:
                    method, props, body = ch.basic_get(queue)
                    if method is None:
                        break
                    n = int(props.message_id)
                    if queue == "dq":
                        record_amqp_delivery(ledger, n, method.redelivered, body, props)
                        drained[n] += 1
                    else:
                        dead.add(n)
                    ch.basic_ack(method.delivery_tag)
        lost = ledger.amqp_confirmed - set(drained) - dead - ledger.amqp_acked
        report["amqp"] = {
            "sent": len(ledger.amqp_sent),
            "confirmed": len(ledger.amqp_confirmed),
            "returned_unroutable": ledger.amqp_returned,
            "acked": len(ledger.amqp_acked),
            "rejected_to_dlx": len(ledger.amqp_rejected),
            "left_in_dq": len(drained),
            "in_dead": len(dead),
            "lost": sorted(lost)[:20],
            "lost_count": len(lost),
            "unexpected": len(set(drained) - ledger.amqp_sent),
            "dup_in_final_drain": sum(1 for c in drained.values() if c > 1),
            "acked_but_back": len(set(drained) & ledger.amqp_acked),
            "redelivery_not_flagged": ledger.amqp_not_flagged,
            "bad_props": ledger.amqp_bad_props,
            "objects_missing": ledger.amqp_objects_missing[:10],
        }
        # Kafka: read every partition from the start.
        c = Consumer(
            {
                "bootstrap.servers": f"127.0.0.1:{ports.kafka}",
                "group.id": "final-check",
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )
        stored: dict[tuple[int, int], int] = {}
        for p in range(PARTITIONS):
            low, high = c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=30)
            c.assign([TopicPartition(TOPIC, p, low)])
            while low < high:
                msg = c.poll(5)
                if msg is None:
                    break
                if msg.error():
                    continue
                stored[(p, msg.offset())] = int(msg.value())
                if msg.offset() >= high - 1:
                    break
        c.close()
        wrong = [k for k, v in ledger.kafka_acked.items() if stored.get(k) != v]
        per_id = Counter(stored.values())
        report["kafka"] = {
            "acked": len(ledger.kafka_acked),
            "stored": len(stored),
            "acked_missing_or_wrong": len(wrong),
            "examples": wrong[:10],
            "ids_stored_twice": sum(1 for c in per_id.values() if c > 1),
            "commits_back": ledger.kafka_commits_back[:10],
            "producer_recreated_after_fatal": ledger.kafka_fatal,
            "partition_counts_seen": sorted(set(ledger.kafka_partitions_seen)),
        }
        # SQS: drain both queues.
        sqs = sqs_client(ports)
        urls = sqs_setup(ports)
        report["sqs"] = {}
        for name in SQS_QUEUES:
            left_bodies: Counter[str] = Counter()
            while True:
                got = sqs.receive_message(
                    QueueUrl=urls[name], MaxNumberOfMessages=10, VisibilityTimeout=3600
                )
                msgs = got.get("Messages", [])
                if not msgs:
                    break
                for m in msgs:
                    left_bodies[m["Body"]] += 1
                    sqs.delete_message(QueueUrl=urls[name], ReceiptHandle=m["ReceiptHandle"])
            confirmed, deleted = ledger.sqs_confirmed[name], ledger.sqs_deleted[name]
            lost_sqs = confirmed - set(left_bodies) - ledger.sqs_delete_tried[name]
            report["sqs"][name] = {
                "confirmed": len(confirmed),
                "deleted": len(deleted),
                "left": len(left_bodies),
                "lost": len(lost_sqs),
                "examples": sorted(lost_sqs)[:10],
                "deleted_but_back": len(set(left_bodies) & deleted),
            }
        report["sqs_stale_deletes"] = ledger.sqs_stale_deletes
        report["client_errors"] = dict(ledger.errors.most_common(12))
        report["stuck_threads"] = ledger.stuck_threads
        report["stuck_names"] = dict(ledger.stuck_names)
    return report


def run_campaign(cycles: int, data_dir: Path, seed: int, max_run: float) -> dict[str, Any]:
    """Run ``cycles`` kill -9 cycles on ``data_dir``, then the final check; the report."""
    rng = random.Random(seed)
    ports, ledger = Ports(), Ledger()
    kafka: list[KafkaProducerLoad] = []
    ids = counter(0)
    started = time.monotonic()
    for cycle in range(cycles):
        run_cycle(cycle, data_dir, ports, ledger, kafka, rng, ids, max_run)
        print(
            f"cycle {cycle + 1}/{cycles}: start, setup, load, join (s)",
            ledger.phase_seconds[-1] if ledger.phase_seconds else "?",
            flush=True,
        )
    report = final_check(data_dir, ports, ledger, kafka)
    kafka.clear()
    report["cycles"] = cycles
    report["seed"] = seed
    report["seconds"] = round(time.monotonic() - started)
    report["failures"] = failures(report)
    return report


def failures(report: dict[str, Any]) -> list[str]:
    """What broke a promise. Duplicates and unflagged redeliveries are within
    at-least-once: reported, not failures."""
    found = []
    amqp, kafka = report["amqp"], report["kafka"]
    # AMQP acks have no answer: one sent just before the kill may not have been
    # written, so a message acked and back ("acked_but_back") is at-least-once.
    for key in ("lost_count", "unexpected", "bad_props"):
        if amqp[key]:
            found.append(f"amqp {key}: {amqp[key]}")
    if amqp["objects_missing"]:
        found.append(f"amqp objects: {amqp['objects_missing']}")
    if not report["amqp_args_checked"]:
        found.append("amqp: dq's arguments did not survive (no 406 on a different x-max-length)")
    if kafka["acked_missing_or_wrong"] or kafka["commits_back"]:
        found.append(
            f"kafka: {kafka['acked_missing_or_wrong']} acked records not at their offset, "
            f"commits back {kafka['commits_back']}"
        )
    if kafka["partition_counts_seen"] != [PARTITIONS]:
        found.append(f"kafka partition counts {kafka['partition_counts_seen']}")
    for name, sqs in report["sqs"].items():
        if sqs["lost"] or sqs["deleted_but_back"]:
            found.append(
                f"sqs {name}: lost {sqs['lost']}, deleted but back {sqs['deleted_but_back']}"
            )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-run", type=float, default=2.5, help="longest run before a kill (s)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    options = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="frontend-crash-"))
    try:
        report = run_campaign(options.cycles, data_dir, options.seed, options.max_run)
        print(json.dumps(report, indent=1, default=str))
    finally:
        if options.keep:
            print("data dir:", data_dir)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    raise SystemExit(1 if report["failures"] else 0)


if __name__ == "__main__":
    main()
