"""A real ``minibroker serve --data-dir`` stopped with SIGTERM and started again.

The storage tests check the clean-shutdown marker on one log in-process;
this is the same path as an operator meets it: the server closes every
store on SIGTERM, the next start trusts the logs' newest segments instead
of rescanning them (and says so in its log), and nothing is lost: every
record, every committed group offset, every unacked durable-queue message.
A SIGKILL in between sends the next start back to the full scan.
"""

from __future__ import annotations

from pathlib import Path

import minibroker
from benchmarks.broker_process import BrokerProcess

BODIES = [b"event-%05d" % i for i in range(3000)]


def test_sigterm_then_restart_trusts_the_logs_and_loses_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with BrokerProcess.start(data_dir) as server:
        with minibroker.connect_sync(server.url) as mb:
            mb.create_log("orders")
            for start in range(0, len(BODIES), 500):
                mb.append_many("orders", BODIES[start : start + 500])
            mb.commit("orders", "billing", 1234)
            mb.declare_queue("jobs", durable=True)
            mb.put_many("jobs", [b"job-1", b"job-2"])
        assert server.stop() == 0

    with BrokerProcess.start(data_dir) as server:
        assert server.lines_matching(r"was closed cleanly: trusting")
        assert not server.lines_matching(r"was not closed cleanly")
        with minibroker.connect_sync(server.url) as mb:
            records = mb.read("orders", start=0, max_records=len(BODIES))
            assert [r.body for r in records] == BODIES
            assert [r.offset for r in records] == list(range(len(BODIES)))
            assert mb.committed("orders", "billing") == 1234
            assert mb.append("orders", b"after-restart") == len(BODIES)
            assert sorted(d.body for d in mb.fetch("jobs", max_messages=10)) == [b"job-1", b"job-2"]
        # Killed this time: the marker was removed when the log opened, so
        # the next start must scan, and still find everything.
        server.kill()

    with BrokerProcess.start(data_dir) as server:
        assert server.lines_matching(r"was not closed cleanly: scanning")
        with minibroker.connect_sync(server.url) as mb:
            records = mb.read("orders", start=0, max_records=len(BODIES) + 1)
            assert [r.body for r in records] == [*BODIES, b"after-restart"]
