"""How long a consumer-group join takes on minibroker's Kafka port, per client.

The issue's goal for the Kafka front end is a group join in under 50 ms.
This measures it from outside, with each of the three Python clients
(confluent-kafka, aiokafka, kafka-python) against ``minibroker serve
--kafka-port``, in two cases:

- **lone member**: from ``subscribe()`` to the member's first assignment
  (the ``on_assign`` / ``on_partitions_assigned`` callback): bootstrap
  metadata, FindCoordinator, JoinGroup, SyncGroup, as a test's consumer
  does it; kafka-python's ``topics()`` call after ``subscribe()`` included
  (docs/kafka.md says why it is needed).
- **2-member rebalance**: a second member subscribes to the topic (two
  partitions) of a member that already has both; from its ``subscribe()``
  until both members have their new assignment. The first member learns
  of the round at its next heartbeat (Kafka has no push), so this
  includes up to one ``heartbeat.interval.ms``; it is run with the
  "quick rebalances" settings of docs/kafka.md (100 ms) and with 10 ms.

Members poll with 5 ms timeouts, so a figure may be up to 5 ms late::

    python -m benchmarks.kafka_join --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks.config import HOST
from benchmarks.targets.base import free_port, port_open, stop_process, wait_for
from benchmarks.targets.minibroker import REPO_ROOT, server_env

SESSION_MS = 6000
DEADLINE = 30.0
POLL_S = 0.005
#: ``--backoff-ms``: the clients' reconnect and retry backoffs (None: their defaults).
BACKOFF_MS: int | None = None


class Stamps:
    """When each member got each of its assignments (perf_counter seconds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: dict[str, list[tuple[float, int]]] = {}

    def assigned(self, member: str, partitions: int) -> None:
        with self.lock:
            self.got.setdefault(member, []).append((time.perf_counter(), partitions))

    def wait(self, ready: Callable[[dict[str, list[tuple[float, int]]]], bool]) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            with self.lock:
                if ready(self.got):
                    return
            time.sleep(0.001)
        raise RuntimeError(f"no assignment in {DEADLINE} s: {self.got}")


def _rebalanced(got: dict[str, list[tuple[float, int]]]) -> bool:
    """Both members hold one partition each (the first after giving one up)."""
    return len(got.get("b", [])) >= 1 and got["b"][-1][1] == 1 and got["a"][-1][1] == 1


def _done_at(got: dict[str, list[tuple[float, int]]], start: float) -> float:
    return max(stamp for stamps in got.values() for stamp, _ in stamps if stamp >= start)


# ---------------------------------------------------------------- the clients


def confluent(bootstrap: str, topic: str, group: str, heartbeat_ms: int, two: bool) -> float:
    from confluent_kafka import Consumer

    stamps = Stamps()
    stop = threading.Event()

    def member(name: str, started: list[float]) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": f"join/{name}",
                "group.id": group,
                "session.timeout.ms": SESSION_MS,
                "heartbeat.interval.ms": heartbeat_ms,
                **({} if BACKOFF_MS is None else {"reconnect.backoff.ms": BACKOFF_MS}),
            }
        )
        started.append(time.perf_counter())
        consumer.subscribe([topic], on_assign=lambda _c, parts: stamps.assigned(name, len(parts)))
        while not stop.is_set():
            consumer.poll(POLL_S)
        consumer.close()

    return _threads(stamps, stop, member, two)


def kafka_python(bootstrap: str, topic: str, group: str, heartbeat_ms: int, two: bool) -> float:
    from kafka import ConsumerRebalanceListener, KafkaConsumer

    stamps = Stamps()
    stop = threading.Event()

    def member(name: str, started: list[float]) -> None:
        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                pass

            def on_partitions_assigned(self, assigned: Any) -> None:
                stamps.assigned(name, len(assigned))

        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id=f"join/{name}",
            group_id=group,
            session_timeout_ms=SESSION_MS,
            heartbeat_interval_ms=heartbeat_ms,
            **_backoffs(),
        )
        started.append(time.perf_counter())
        consumer.subscribe([topic], listener=Listener())
        consumer.topics()  # docs/kafka.md: the metadata before the first join
        while not stop.is_set():
            consumer.poll(timeout_ms=int(POLL_S * 1000))
        consumer.close()

    return _threads(stamps, stop, member, two)


def _backoffs() -> dict[str, int]:
    """kafka-python's backoff settings for ``--backoff-ms``."""
    if BACKOFF_MS is None:
        return {}
    return {"retry_backoff_ms": BACKOFF_MS, "reconnect_backoff_ms": BACKOFF_MS}


def _threads(
    stamps: Stamps,
    stop: threading.Event,
    member: Callable[[str, list[float]], None],
    two: bool,
) -> float:
    """Run member ``a`` (and then ``b``) in threads; the join's time in seconds."""
    started: list[float] = []
    threads = [threading.Thread(target=member, args=("a", started), daemon=True)]
    threads[0].start()
    try:
        stamps.wait(lambda got: bool(got.get("a")))
        if not two:
            return stamps.got["a"][0][0] - started[0]
        threads.append(threading.Thread(target=member, args=("b", started), daemon=True))
        threads[1].start()
        stamps.wait(_rebalanced)
        return _done_at(stamps.got, started[1]) - started[1]
    finally:
        stop.set()
        for thread in threads:
            thread.join(DEADLINE)


def aiokafka(bootstrap: str, topic: str, group: str, heartbeat_ms: int, two: bool) -> float:
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

    stamps = Stamps()

    async def run() -> float:
        consumers: list[Any] = []
        started: list[float] = []

        async def member(name: str) -> None:
            class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
                async def on_partitions_revoked(self, revoked: Any) -> None:
                    pass

                async def on_partitions_assigned(self, assigned: Any) -> None:
                    stamps.assigned(name, len(assigned))

            consumer = AIOKafkaConsumer(
                bootstrap_servers=bootstrap,
                client_id=f"join/{name}",
                group_id=group,
                session_timeout_ms=SESSION_MS,
                heartbeat_interval_ms=heartbeat_ms,
                **({} if BACKOFF_MS is None else {"retry_backoff_ms": BACKOFF_MS}),
            )
            consumers.append(consumer)
            await consumer.start()
            started.append(time.perf_counter())
            consumer.subscribe([topic], listener=Listener())

        async def until(ready: Callable[[dict[str, list[tuple[float, int]]]], bool]) -> None:
            async with asyncio.timeout(DEADLINE):
                while not ready(stamps.got):
                    for consumer in consumers:
                        await consumer.getmany(timeout_ms=int(POLL_S * 1000))

        try:
            await member("a")
            await until(lambda got: bool(got.get("a")))
            if not two:
                return stamps.got["a"][0][0] - started[0]
            await member("b")
            await until(_rebalanced)
            return _done_at(stamps.got, started[1]) - started[1]
        finally:
            for consumer in consumers:
                await consumer.stop()

    return asyncio.run(run())


CLIENTS = {"confluent-kafka": confluent, "aiokafka": aiokafka, "kafka-python": kafka_python}


def _create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "join/admin"})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(DEADLINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--backoff-ms",
        type=int,
        default=None,
        help="the clients' reconnect/retry backoff (default: each client's own)",
    )
    args = parser.parse_args(argv)
    global BACKOFF_MS
    BACKOFF_MS = args.backoff_ms
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "minibroker",
            "serve",
            "--port",
            str(free_port()),
            "--kafka-port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO_ROOT,
        env=server_env(),
    )
    try:
        if not wait_for(lambda: port_open(port, timeout=0.2), 30):
            raise RuntimeError("minibroker did not listen")
        bootstrap = f"{HOST}:{port}"
        cases = [
            ("lone member", 100, False),
            ("2-member rebalance", 100, True),
            ("2-member rebalance", 10, True),
        ]
        for client, run in CLIENTS.items():
            for case, heartbeat_ms, two in cases:
                times = []
                for n in range(args.repeat):
                    topic = f"join-{os.getpid()}-{client}-{heartbeat_ms}-{two}-{n}"
                    _create_topic(bootstrap, topic)
                    times.append(run(bootstrap, topic, f"g-{topic}", heartbeat_ms, two) * 1e3)
                print(
                    f"{client:15s} {case:18s} heartbeat {heartbeat_ms:3d} ms: "
                    f"median {statistics.median(times):6.1f} ms, max {max(times):6.1f} ms "
                    f"({', '.join(f'{t:.1f}' for t in times)}; load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    finally:
        stop_process(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
