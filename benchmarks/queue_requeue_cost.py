"""The core's CPU per requeued message, in process: what returning in publish order costs.

A requeue merges the returned messages, by publish order, into the messages
returned before them at the front of the queue
(``minibroker.core.ready.return_in_order``); it used to be one
``extendleft``. The cost depends on how many earlier returns a return has to
pass, so each scenario fetches ``--window`` messages (a consumer's prefetch)
and gives them all back, then fetches them again, and so on:

* ``batch``: one nack of the whole window (a closed channel, basic.recover);
* ``descending``: one nack per message, newest first (each goes to the front);
* ``ascending``: one nack per message, oldest first (each passes every
  return before it: the worst case, linear in the window);
* ``random``: one nack per message, in random order.

Prints CPU microseconds per returned message (``process_time``, best of
``--repeat``); ``--baseline DIR`` runs the same against another source tree
(a checkout of an older commit), alternating with this one::

    python -m benchmarks.queue_requeue_cost [--window 100] [--rounds 200]
        [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("batch", "descending", "ascending", "random")


class Consumer:
    conn_id = 7

    def resolve(self, token: int, result: object) -> None:
        raise AssertionError("nothing parks")

    def reject(self, token: int, error: object) -> None:
        raise AssertionError(error)

    def push_ready(self, source: object) -> None:
        raise AssertionError("queues never push")

    def kick(self, error: object) -> None:
        raise AssertionError(error)


def run(scenario: str, window: int, rounds: int) -> float:
    """CPU seconds per returned message in ``scenario``."""
    from minibroker.core.broker import Broker
    from minibroker.core.config import CoreConfig
    from minibroker.core.queues import QueueOptions

    broker = Broker(CoreConfig())
    queues = broker.namespace("bench").queues
    queues.declare("q", QueueOptions(), 0.0)
    queue = queues.get("q")
    consumer = Consumer()
    queue.put([b"%08d" % i for i in range(window * 4)], 0.0)
    shuffle = random.Random(1).shuffle
    spent = 0.0
    for _ in range(rounds):
        got = queue.fetch(consumer, window, 1.0)
        ids = [m.delivery_id for m in got]
        if scenario == "descending":
            ids.reverse()
        elif scenario == "random":
            shuffle(ids)
        start = time.process_time()
        if scenario == "batch":
            queue.nack(consumer, ids, 1.0)
        else:
            for delivery_id in ids:
                queue.nack(consumer, [delivery_id], 1.0)
        spent += time.process_time() - start
    return spent / (rounds * window)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another source tree to measure too")
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:  # one run in this process (PYTHONPATH picks the tree)
        print(run(args.inner, args.window, args.rounds))
        return
    trees = [("this tree", ROOT)]
    if args.baseline is not None:
        trees.append(("baseline", args.baseline.resolve()))
    for scenario in SCENARIOS:
        best = {name: float("inf") for name, _ in trees}
        for _ in range(args.repeat):
            for name, root in trees:  # alternated: old, new, old, new
                out = subprocess.run(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--inner",
                        scenario,
                        "--window",
                        str(args.window),
                        "--rounds",
                        str(args.rounds),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(root)},
                    cwd=root,
                )
                best[name] = min(best[name], float(out.stdout))
        for name, _ in trees:
            print(
                f"{scenario:<11} {name:<10} {best[name] * 1e6:7.3f} us/msg (best of {args.repeat})"
            )
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
