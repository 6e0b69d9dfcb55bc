"""Two cycles of the front-end crash campaign (benchmarks/frontend_crash_campaign.py)
in every test run: pika with confirms, an idempotent confluent-kafka producer and
boto3 under a ``minibroker serve`` killed with SIGKILL, then restarted on the
same data directory. Nothing confirmed may be lost, nothing acked or deleted
may come back, durable AMQP objects and Kafka partitions must survive. The
long run is ``python -m benchmarks.frontend_crash_campaign --cycles 200``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

pytest.importorskip("pika")
pytest.importorskip("confluent_kafka")
pytest.importorskip("boto3")

from benchmarks.frontend_crash_campaign import run_campaign

pytestmark = pytest.mark.slow


def test_frontend_crash_campaign(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_CAMPAIGN_SEED", random.randrange(1 << 32)))
    report = run_campaign(2, tmp_path / "data", seed, max_run=1.0)
    assert report["failures"] == [], report
    assert report["amqp"]["confirmed"] > 0, report
    assert report["kafka"]["acked"] > 0, report
    assert report["sqs"]["sq"]["confirmed"] > 0, report
