"""What the x-ray costs per request: off, on but not matching, on and tracing.

    python -m benchmarks.xray_overhead               # wall-clock, best of 5
    python -m benchmarks.xray_overhead --callgrind   # instructions, under valgrind

Runs a publish (to a topic with one subscription) through the core directly,
so the numbers are the tracer's own cost, not a round trip's noise: "off" is
the attribute check ``Session._dispatch`` makes; "miss" is tracing on for a
pattern this topic does not match; "traced" records every publish.

Wall-clock microseconds swing by half on a loaded machine; ``--callgrind``
counts the CPU instructions each setting executes instead (valgrind's
callgrind, one process per setting, 2,000 publishes less the same process
with none, divided by 2,000), which does not depend on the load. It adds
the baseline "x-ray off" is to be read against: the same wrapper call
without the check (the benchmark's ``dispatch`` is a function of its own,
where ``Session._dispatch`` does the check inline).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minibroker.core.broker import Broker
from minibroker.core.xray import Xray
from minibroker.storage.memory import MemoryLog

ROUNDS = 5
CALLS = 20_000
#: Publishes per setting under callgrind (about 50 times slower than without).
CALLGRIND_CALLS = 2_000
#: The baseline for "x-ray off": the same wrapper call, minus the attribute check.
WITHOUT_CHECK = "dispatch without the x-ray check"


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


def _settings(broker: Broker) -> dict[str, Callable[[], None]]:
    """Each setting's name and how to put the broker in it."""

    def off() -> None:
        broker.xray = None

    return {
        "x-ray off": off,
        "x-ray on, not matching": lambda: setattr(
            broker, "xray", Xray(time.perf_counter, "billing.#")
        ),
        "x-ray on, tracing every publish": lambda: setattr(
            broker, "xray", Xray(time.perf_counter, "#", keep=100)
        ),
        "x-ray on, 1 in 100 sampled": lambda: setattr(
            broker, "xray", Xray(time.perf_counter, "#", sample_every=100)
        ),
    }


def _setup() -> tuple[Broker, Callable[[], object], Callable[[], object]]:
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

    return broker, handler, dispatch


def _run_one(setting: str, calls: int) -> None:
    """Put the broker in ``setting`` and publish ``calls`` times (under valgrind)."""
    broker, handler, dispatch = _setup()

    def without_check() -> object:  # dispatch's call, without looking at the x-ray
        return handler()

    run = {"bare publish": handler, WITHOUT_CHECK: without_check}.get(setting)
    if run is None:
        _settings(broker)[setting]()
        run = dispatch
    for _ in range(calls):
        run()


def _instructions(setting: str, calls: int) -> int:
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks.xray_overhead",
            "--setting",
            setting,
            "--calls",
            str(calls),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    assert found, done.stderr
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=CALLGRIND_CALLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setting is not None:
        _run_one(args.setting, args.calls)
        return
    names = ["bare publish", *_settings(Broker(memory_log=MemoryLog))]
    if args.callgrind:
        names.insert(1, WITHOUT_CHECK)
        start = _instructions("bare publish", 0)
        for name in names:
            per_call = (_instructions(name, CALLGRIND_CALLS) - start) / CALLGRIND_CALLS
            print(f"{name:<34} {per_call:8.0f} instructions per publish")
        return
    broker, handler, dispatch = _setup()
    results = {"bare publish": _best(handler)}
    for name, enter in _settings(broker).items():
        enter()
        results[name] = _best(dispatch)
    for name, micros in results.items():
        print(f"{name:<34} {micros:6.2f} µs per publish")


if __name__ == "__main__":
    main()
