"""The Celery app the Celery tests run, in a thread and as a worker process.

The broker URL comes from ``MINIBROKER_TEST_AMQP_URL`` (the worker process
imports this module by name) or from :func:`make_app`.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery


def make_app(broker_url: str) -> Celery:
    app = Celery("minibroker_test", broker=broker_url, backend="rpc://")
    app.conf.update(
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        worker_hijack_root_logger=False,
        result_expires=None,
    )

    @app.task(name="add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="flaky", bind=True, max_retries=5, shared=False)
    def flaky(self: Any, value: str, failures: int) -> str:
        # Fails ``failures`` times, then succeeds: each failure is a retry,
        # which Celery publishes as a new message through the broker.
        if self.request.retries < failures:
            raise self.retry(countdown=0)
        return f"{value} after {self.request.retries} retries"

    return app


def __getattr__(name: str) -> Celery:
    """``celery -A celery_app`` reads ``app``: built from the environment, on demand."""
    if name != "app":
        raise AttributeError(name)
    return make_app(os.environ["MINIBROKER_TEST_AMQP_URL"])
