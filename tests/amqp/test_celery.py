"""A Celery app on minibroker's AMQP port: real tasks, retries, the rpc:// result backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker

from tests.amqp.celery_app import make_app  # type: ignore[import-not-found]

HERE = Path(__file__).parent
#: The most a task's result or a new worker process takes: reached only by a
#: broken run, never a pace (CI's machine runs at load 8 and more).
WAIT = 60


def _pyamqp(url: str) -> str:
    return url.replace("amqp://", "pyamqp://")


@pytest.mark.slow
def test_a_worker_thread_runs_tasks_and_retries(minibroker_amqp_url: str) -> None:
    app = make_app(_pyamqp(minibroker_amqp_url))
    app.loader.import_module("celery.contrib.testing.tasks")  # celery.ping, for the check
    # start_worker pings the worker through the pidbox (fanout exchange,
    # reply exchange) before it returns: broadcast control works too.
    # Celery 5.7's test worker takes about 10 s to stop (against RabbitMQ
    # too), hence the generous shutdown_timeout.
    with start_worker(
        app, pool="solo", perform_ping_check=True, ping_task_timeout=WAIT, shutdown_timeout=40
    ):
        assert app.send_task("add", (2, 3)).get(timeout=WAIT) == 5
        results = [app.send_task("add", (i, i)) for i in range(10)]
        assert [r.get(timeout=WAIT) for r in results] == [2 * i for i in range(10)]
        assert app.send_task("flaky", ("done", 2)).get(timeout=WAIT) == "done after 2 retries"


@pytest.mark.slow
def test_a_worker_process_runs_tasks_and_stops_warmly(minibroker_amqp_url: str) -> None:
    url = _pyamqp(minibroker_amqp_url)
    env = {**os.environ, "MINIBROKER_TEST_AMQP_URL": url}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_app",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--loglevel=warning",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        app = make_app(url)
        deadline = time.monotonic() + WAIT  # the worker process starts meanwhile
        replies = app.control.ping(timeout=1.0)
        while not replies and time.monotonic() < deadline:
            replies = app.control.ping(timeout=1.0)
        assert replies, "the worker never answered a ping"
        assert app.send_task("add", (20, 22)).get(timeout=WAIT) == 42
        assert app.send_task("flaky", ("ok", 1)).get(timeout=WAIT) == "ok after 1 retries"
    finally:
        worker.send_signal(signal.SIGTERM)  # warm shutdown
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr.decode(errors="replace")[-2000:]
