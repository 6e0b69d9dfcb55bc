"""What the x-ray costs per request: off, on but not matching, on and tracing.

    python -m benchmarks.xray_overhead

Runs a publish (to a topic with one subscription) through the core directly,
so the numbers are the tracer's own cost, not a round trip's noise: "off" is
the attribute check ``Session._dispatch`` makes; "miss" is tracing on for a
pattern this topic does not match; "traced" records every publish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from minibroker.core.broker import Broker
from minibroker.core.xray import Xray
from minibroker.storage.memory import MemoryLog

ROUNDS = 5
CALLS = 20_000


@dataclass
class _Message:
    body: bytes
    headers: dict[str, str] | None = None


@dataclass
class _Publish:
    topic: str
    messages: list[_Message]
    op: str = "publish"


class _Peer:
    conn_id = 1

    def push_ready(self, source: Any) -> None:
        source.items.clear()  # a subscriber that keeps up


def _best(run: Any) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            run()
        best = min(best, time.perf_counter() - started)
    return best / CALLS * 1e6


def main() -> None:
    broker = Broker(memory_log=MemoryLog)
    ns = broker.namespace()
    ns.topics.subscribe(_Peer(), 1, "orders.*")
    frame = _Publish("orders.created", [_Message(b"x" * 64)])

    def handler() -> object:
        return ns.topics.publish(frame.topic, frame.messages, 0.0)

    def dispatch() -> object:  # what Session._dispatch does
        xray = broker.xray
        if xray is None:
            return handler()
        return xray.trace_frame(ns, 1, frame, handler)

    results = {}
    results["bare publish"] = _best(handler)
    results["x-ray off"] = _best(dispatch)
    broker.xray = Xray(time.perf_counter, "billing.#")
    results["x-ray on, not matching"] = _best(dispatch)
    broker.xray = Xray(time.perf_counter, "#", keep=100)
    results["x-ray on, tracing every publish"] = _best(dispatch)
    broker.xray = Xray(time.perf_counter, "#", sample_every=100)
    results["x-ray on, 1 in 100 sampled"] = _best(dispatch)
    for name, micros in results.items():
        print(f"{name:<34} {micros:6.2f} µs per publish")


if __name__ == "__main__":
    main()
