"""Settings of one harness run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ALL_TARGETS = (
    "minibroker",
    "minibroker-durable",
    "minibroker-busy-poll",
    "minibroker-kafka",
    "minibroker-amqp",
    "rabbitmq",
    "kafka",
    "nats",
)
ALL_WORKLOADS = ("w1", "w2", "w3", "w4", "w5")

# Only loopback: the harness never sends traffic anywhere else.
HOST = "127.0.0.1"
RABBITMQ_PORT = 5672
NATS_PORT = 4222


@dataclass(frozen=True)
class Counts:
    queue: int  # W1 messages per run
    fanout: int  # W2 messages published (each delivered to 4 subscribers)
    log: int  # W3 records appended, then replayed
    rr_sequential: int  # W4 sequential requests (after a warm-up)
    rr_concurrent: int  # W4 requests with 16 in flight
    rr_warmup: int


FULL = Counts(
    queue=100_000,
    fanout=100_000,
    log=1_000_000,  # issue 5: append 1,000,000 records of 100 bytes, then replay them
    rr_sequential=5_000,
    rr_concurrent=20_000,
    rr_warmup=500,
)
QUICK = Counts(
    queue=2_000, fanout=2_000, log=5_000, rr_sequential=200, rr_concurrent=1_000, rr_warmup=20
)


@dataclass(frozen=True)
class RunConfig:
    targets: tuple[str, ...]
    workloads: tuple[str, ...]
    counts: Counts
    body_size: int = 100
    batch: int = 1_000  # messages per batch where a client batches (put_many, fetch ...)
    prefetch: int = 2_000  # consumer prefetch / max in flight
    ack_every: int = 100  # multiple-ack every N messages where the broker has it
    confirm_window: int = 1_000  # outstanding unconfirmed publishes
    concurrency: int = 16  # W4 requests in flight
    subscribers: int = 4  # W2
    timeout: float = 180.0  # per phase
    idle_timeout: float = 5.0  # a receiver gives up after this long with nothing new
    fsync: str | None = None  # passed to `minibroker serve --fsync` when set
    max_load: float | None = None  # wait for a quieter machine before each scenario
    repeat: int = 1  # runs per scenario; the report shows the median
    quick: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
