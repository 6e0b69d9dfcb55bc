"""Instructions per message of a whole ``minibroker serve`` process running W1.

Starts the server under ``valgrind --tool=callgrind`` from each source tree
given (this checkout, and ``--baseline DIR``), zeroes its counters, runs W1
against it from this process (one connection putting through
``queue_producer(max_batch=1000)``, one iterating ``consume(prefetch=2000,
ack_every=100)`` and acking every delivery, 100-byte bodies: the roles of
benchmarks/targets/minibroker.py), dumps the counters and divides by the
messages. Everything the server does counts: the Trio loop, the socket
reads and writes, decoding, the queue, encoding. The server runs about 50x
slower under callgrind, so its reads carry more messages than on a real
machine; callgrind counts no kernel time::

    python -m benchmarks.w1_callgrind [--messages 20000] [--baseline DIR] [--rounds 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.amqp_callgrind import Server, native_w1
from benchmarks.sysinfo import load_average
from benchmarks.targets.minibroker import REPO_ROOT


def w1(server: Server, messages: int) -> None:
    """One W1 run against ``server``: every message put, delivered and acked."""
    native_w1(server, messages, batch=1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--baseline", type=Path, help="another source tree to count too")
    parser.add_argument("--rounds", type=int, default=2, help="runs per tree, alternated")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="w1-callgrind-"))
    trees = [("this tree", REPO_ROOT)]
    if args.baseline is not None:
        trees.append(("baseline", args.baseline.resolve()))
    servers = [Server.start(label, root, work, None) for label, root in trees]
    loads = [load_average()]
    n = args.messages
    try:
        for server in servers:  # warm-up: imports, caches, first connections
            w1(server, 2000)
        for _ in range(args.rounds):
            for server in servers:
                total, _phases = server.counted(lambda s=server: w1(s, n))
                loads.append(load_average())
                print(f"{server.label:10} {total / n:10,.0f} instructions/msg", flush=True)
    finally:
        for server in servers:
            server.stop()
    print(f"{n:,} messages of 100 bytes per run; load average {min(loads):.1f}-{max(loads):.1f}")


if __name__ == "__main__":
    main()
