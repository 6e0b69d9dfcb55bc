"""The broker's own work per message on the W1 path, in process: no sockets, no clients.

W1 (one producer, one consumer, every message acked) reaches the broker as
``put`` frames of bare bodies (``put.bare``), long-polling ``fetch`` frames
with ``compact`` (``fetch.compact``) and ``ack`` frames of ``ack_every``
ids. This drives the same handlers and core calls directly, on one queue,
in one of two regimes:

* ``parked`` (the broker keeps up): the consumer's fetches are parked when
  a put arrives, so the put hands its messages straight to them;
* ``backlog`` (the producer is ahead): puts find no parked fetch, the
  messages wait as ready, and each fetch takes ``per_fetch`` of them.

Each put, fetch answer and ack goes through msgpack as on the wire, so the
figure is the broker's per-message cost without the event loop and the
system calls. Prints CPU microseconds per message (``process_time``,
best of ``--repeat``); under ``valgrind --tool=callgrind`` (``--callgrind``:
only the measured loop is counted) instructions per message, which do not
depend on the load::

    python -m benchmarks.queue_core_cost [--regime parked|backlog|both]
        [--messages 200000] [--callgrind] [--baseline DIR]

``--baseline DIR`` runs the same against another source tree (a checkout of
an older commit), alternating with this one.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BODY = 100
BATCH = 1_000
PER_FETCH = 1_000  # prefetch 2000 over two fetches in flight (client/queue_consumer.py)
ACK_EVERY = 100


class Consumer:
    """The consumer's connection, as the core sees it: answers are packed and kept."""

    def __init__(self) -> None:
        import msgpack

        self.conn_id = 7
        self._pack = msgpack.packb
        self.answers: list[Any] = []

    def resolve(self, token: int, result: object) -> None:
        from minibroker.protocol.handlers.queues import encode_compact

        answer = encode_compact(result)  # type: ignore[arg-type]
        self._pack({"id": token, "ok": True, "result": answer})
        self.answers.append(answer)

    def reject(self, token: int, error: object) -> None:
        raise AssertionError(error)

    def push_ready(self, source: object) -> None:
        raise AssertionError("queues never push")

    def kick(self, error: object) -> None:
        raise AssertionError(error)


def run(regime: str, messages: int) -> float:
    """CPU seconds the broker's side of ``messages`` W1 messages took."""
    import msgpack

    from minibroker.core.broker import Broker
    from minibroker.core.config import CoreConfig
    from minibroker.core.queues import QueueOptions
    from minibroker.protocol.handlers.queues import decode_put, encode_compact

    broker = Broker(CoreConfig())
    queues = broker.namespace("bench").queues
    queues.declare("w1", QueueOptions(), 0.0)
    queue = queues.get("w1")
    consumer = Consumer()
    pad = b"x" * (BODY - 8)
    puts = [
        msgpack.packb(
            {
                "op": "put",
                "id": n,
                "queue": "w1",
                "messages": [(n * BATCH + i).to_bytes(8, "big") + pad for i in range(BATCH)],
            }
        )
        for n in range(messages // BATCH)
    ]
    unpack = msgpack.unpackb
    pack = msgpack.packb
    budget = 1 << 20
    now = 1.0
    token = 0

    def ack_all(answer: Any) -> None:
        first = answer["first_id"]
        ids = list(range(first, first + len(answer["bodies"])))
        for at in range(0, len(ids), ACK_EVERY):
            frame = unpack(
                pack({"op": "ack", "id": 1, "queue": "w1", "deliveries": ids[at : at + ACK_EVERY]})
            )
            count = queue.ack(consumer, frame["deliveries"], now)
            pack({"id": 1, "ok": True, "result": {"count": count}})

    # Trees with the compact core path (``fetch_compact``, ``wait(compact=)``)
    # are driven as the native fetch handler drives them; older ones as theirs did.
    columns = hasattr(queue, "fetch_compact")
    fetch = queue.fetch_compact if columns else queue.fetch
    wait_compact = {"compact": True} if columns else {}

    def loop() -> None:
        nonlocal now, token
        if regime == "parked":
            for raw in puts:
                token += 1
                queue.wait(consumer, token, PER_FETCH, now, 30.0, None, budget, **wait_compact)
                frame = decode_put(unpack(raw))
                queue.put(frame.messages, now)
                pack({"id": frame.id, "ok": True, "result": {"count": len(frame.messages)}})
                for answer in consumer.answers:
                    ack_all(answer)
                consumer.answers.clear()
                now += 0.001
        else:
            for n in range(0, len(puts), 10):
                for raw in puts[n : n + 10]:
                    frame = decode_put(unpack(raw))
                    queue.put(frame.messages, now)
                    pack({"id": frame.id, "ok": True, "result": {"count": len(frame.messages)}})
                while queue.ready_count:
                    delivered = fetch(consumer, PER_FETCH, now, None, budget)
                    answer = encode_compact(delivered)
                    pack({"id": 2, "ok": True, "result": answer})
                    ack_all(answer)
                now += 0.01

    start = time.process_time()
    sys.call_tracing(loop, ())  # callgrind counts inside this call only
    spent = time.process_time() - start
    stats = queue.statistics()
    assert stats.acked == messages and stats.in_flight == 0 and stats.ready == 0, stats
    return spent


def _instructions(root: Path, regime: str, messages: int) -> int:
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "callgrind.out"
        # Only the measured loop (run through sys.call_tracing) is counted:
        # not the start-up, the prepared frames or the teardown.
        env = {**os.environ, "PYTHONPATH": str(root)}
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                "--toggle-collect=sys_call_tracing",
                sys.executable,
                str(Path(__file__).resolve()),
                "--inner",
                "--regime",
                regime,
                "--messages",
                str(messages),
            ],
            check=True,
            capture_output=True,
            env=env,
            cwd=root,
        )
        found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        assert found is not None
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--regime", default="both", choices=["parked", "backlog", "both"])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--baseline", type=Path, help="another source tree to measure too")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    regimes = ["parked", "backlog"] if args.regime == "both" else [args.regime]
    if args.inner:  # one run in this process (PYTHONPATH picks the tree)
        for regime in regimes:
            print(run(regime, args.messages))
        return
    trees = [("this tree", ROOT)]
    if args.baseline is not None:
        trees.append(("baseline", args.baseline.resolve()))
    n = args.messages
    for regime in regimes:
        if args.callgrind:
            for label, root in trees:
                counted = _instructions(root, regime, n)
                print(f"{regime:8} {label:10} {counted / n:10,.0f} instructions/msg")
            continue
        best: dict[str, float] = {}
        for _ in range(args.repeat):  # alternated: the trees see the same load
            for label, root in trees:
                env = {**os.environ, "PYTHONPATH": str(root)}
                out = subprocess.run(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--inner",
                        "--regime",
                        regime,
                        "--messages",
                        str(n),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=env,
                    cwd=root,
                )
                spent = float(out.stdout.split()[-1])
                best[label] = min(best.get(label, spent), spent)
        for label, spent in best.items():
            print(f"{regime:8} {label:10} {spent / n * 1e6:8.3f} us/msg (best of {args.repeat})")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
