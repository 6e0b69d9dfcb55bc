"""After a workload and the deletion of everything it made, ``minibroker serve``
comes back to its idle memory: RSS within 10 % of the idle figure (issue 19).

A real server process, since what is measured is what the operating system
sees: the workload of ``benchmarks/memory_soak.py`` (a queue of 50,000
messages put, consumed and acked, a log appended and replayed, a topic, a few
hundred requests; then the queue and the log deleted and the connection
closed). The server settles its memory at the first idle second after a
burst (server/memory_settle.py) and logs it; the test waits for that line,
not for a time.
"""

from __future__ import annotations

import sys

import pytest
import trio

import minibroker
from benchmarks.broker_process import BrokerProcess
from benchmarks.memory_soak import one_round

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; glibc's trim"),
]

SETTLED = "settled memory after a burst"
MESSAGES = 50_000
MiB = 1024 * 1024


def test_rss_comes_back_to_idle_after_everything_is_deleted(
    broker_processes: list[BrokerProcess],
) -> None:
    server = BrokerProcess.start(None, log_level="debug")
    broker_processes.append(server)
    with minibroker.connect_sync(server.url) as mb:
        mb.ping(b"warm")  # a first connection's own costs count as idle
    idle = server.rss_bytes()
    seen = len(server.log)
    trio.run(one_round, server.url, 0, MESSAGES)
    # A settle may also come in a pause of the workload, with the queue still
    # full; the one that counts is the first that finds the memory back.
    while (after := server.rss_bytes()) > idle * 1.10:
        try:
            seen = server.wait_for_line(SETTLED, after=seen) + 1
        except TimeoutError:
            pytest.fail(f"RSS {after / MiB:.1f} MiB after the workload, idle {idle / MiB:.1f} MiB")
    print(f"RSS idle {idle / MiB:.1f} MiB, after the workload {after / MiB:.1f} MiB")
