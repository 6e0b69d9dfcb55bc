"""``minibroker trace`` against a threaded broker's HTTP face."""

from __future__ import annotations

import subprocess
import sys

import minibroker
from minibroker.testing import run_in_thread


def test_trace_prints_the_steps_of_a_matching_publish() -> None:
    with run_in_thread(http_port=0) as broker:
        command = [
            sys.executable,
            "-m",
            "minibroker",
            "trace",
            "--http",
            broker.http_url,
            "--topic",
            "orders.*",
            "--count",
            "1",
        ]
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as tracer:
            assert tracer.stderr is not None
            assert tracer.stderr.readline().startswith("tracing 'orders.*'")  # it is on now
            with minibroker.connect_sync(broker.url) as mb:
                mb.publish("billing.paid", b"not traced")
                mb.publish("orders.created", b"o-1")
            out, _ = tracer.communicate(timeout=60)
        assert tracer.returncode == 0
        assert broker.server.broker.xray is None  # turned off again on the way out
    lines = out.splitlines()
    assert lines[0].startswith("#") and "publish orders.created" in lines[0]
    assert [line.split()[3] for line in lines[1:]] == ["decode", "trie", "publish", "deliveries"]
    assert "minibroker/core/topics.py::Topics.publish" in out
