"""The pytest fixtures under pytest-xdist (docs/testing.md, "Setting up").

Each xdist worker is a process of its own: its session-scoped brokers
(``minibroker_server`` and the AMQP, Kafka and SQS ones) start on free ports
in that process, and namespaces are numbered per process, which is safe
because no two workers share a broker. A user's suite runs here in a pytest
subprocess with ``-n 2``, as a project would run it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SUITE = """
import json, os
import minibroker
import pytest

def record(server, url):
    line = {"worker": os.environ["PYTEST_XDIST_WORKER"], "port": server.port, "url": url}
    with open(os.environ["SEEN"], "a") as seen:
        seen.write(json.dumps(line) + "\\n")

@pytest.mark.parametrize("timeout", [10, 20])
def test_blocking(minibroker_server, minibroker_url, timeout):
    record(minibroker_server, minibroker_url)
    with minibroker.connect_sync(minibroker_url) as mb:
        assert mb.declare_queue("jobs", visibility_timeout=timeout)
        assert [q.queue for q in mb.list_queues()] == ["jobs"]

@pytest.mark.trio
async def test_trio(minibroker_client):
    await minibroker_client.declare_queue("jobs")
"""


def test_each_worker_runs_its_own_session_broker(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = tmp_path / "seen.jsonl"
    monkeypatch.setenv("SEEN", str(seen))
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_one=SUITE, test_two=SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile"
    )
    result.assert_outcomes(passed=6)
    lines = [json.loads(line) for line in seen.read_text().splitlines()]
    ports = {line["worker"]: line["port"] for line in lines}
    assert len(ports) == 2 and len(set(ports.values())) == 2
