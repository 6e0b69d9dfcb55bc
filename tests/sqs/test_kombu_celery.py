"""kombu's SQS transport and a Celery worker, pointed at the SQS endpoint.

kombu builds its endpoint from the broker URL's host and port
(``sqs://key:secret@127.0.0.1:PORT`` with ``is_secure: False``), so its
queues live in the default namespace; each test keeps its queues apart with
kombu's ``queue_name_prefix``. kombu's receive path is its own asynchronous
HTTP client (pycurl) speaking the JSON protocol, not boto3.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from minibroker.testing import SqsEndpoint

kombu = pytest.importorskip("kombu", reason="kombu[sqs] is in the test extra")
pytest.importorskip("pycurl", reason="kombu's SQS transport needs pycurl")


def transport_options(endpoint: SqsEndpoint) -> dict[str, Any]:
    return {
        "is_secure": False,
        "region": endpoint.region,
        "queue_name_prefix": f"{endpoint.namespace}-",
        "wait_time_seconds": 1,
        "polling_interval": 0.05,
    }


def broker_url(endpoint: SqsEndpoint) -> str:
    return f"sqs://minibroker:minibroker@127.0.0.1:{endpoint.server.server.sqs_port}"


def test_kombu_simple_queue(minibroker_sqs_endpoint: SqsEndpoint) -> None:
    options = transport_options(minibroker_sqs_endpoint)
    with kombu.Connection(broker_url(minibroker_sqs_endpoint), transport_options=options) as conn:
        queue = conn.SimpleQueue("jobs")
        for i in range(3):
            queue.put({"n": i})
        got = []
        for _ in range(3):
            message = queue.get(timeout=10)
            got.append(message.payload["n"])
            message.ack()
        queue.close()
    assert sorted(got) == [0, 1, 2]
    core = minibroker_sqs_endpoint.server.server.broker.namespace("")
    stats = core.queues.get(f"{minibroker_sqs_endpoint.namespace}-jobs").statistics()
    assert (stats.published, stats.acked, stats.ready, stats.in_flight) == (3, 3, 0, 0)


def test_celery_worker_runs_tasks(minibroker_sqs_endpoint: SqsEndpoint) -> None:
    celery = pytest.importorskip("celery")
    from celery.contrib.testing.worker import start_worker

    app = celery.Celery("minibroker-test", broker=broker_url(minibroker_sqs_endpoint))
    app.conf.broker_transport_options = transport_options(minibroker_sqs_endpoint)
    results: list[int] = []
    all_done = threading.Event()

    @app.task
    def add(x: int, y: int) -> int:
        results.append(x + y)
        if len(results) == 5:
            all_done.set()
        return x + y

    with start_worker(app, perform_ping_check=False, pool="solo", shutdown_timeout=10):
        for i in range(5):
            add.delay(i, 100)
        assert all_done.wait(30)
    assert sorted(results) == [100, 101, 102, 103, 104]
