"""A few cycles of the crash campaign (benchmarks/crash_campaign.py) in every test run.

The full campaign runs on demand (``python -m benchmarks.crash_campaign
--cycles 1000``); here three kill -9 cycles under mixed load (durable queue,
topic bound to a durable queue, log with a consumer group, request/reply)
must lose nothing that was confirmed, deliver nothing that was not sent and
leave no batch in part. The seed is random
each run (printed on failure; set CRASH_CAMPAIGN_SEED to replay one).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from benchmarks.crash_campaign import run_campaign

pytestmark = pytest.mark.slow


def test_crash_campaign(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_CAMPAIGN_SEED", random.randrange(1 << 32)))
    report = run_campaign(
        3,
        data_dir=tmp_path / "data",
        seed=seed,
        max_load_seconds=1.0,
        early_kill_chance=0.5,
    )
    print(report.summary())
    assert report.ok, report.summary()
    assert report.cycles == 3
    for stream in (report.queue, report.topic, report.log):
        assert stream["confirmed"] > 0, report.summary()
        assert stream["lost"] == stream["unexpected"] == 0
        assert stream["batches_partial"] == 0, report.summary()
        assert stream["batches_whole"] > 0, report.summary()
    assert report.requests["answered"] > 0, report.summary()
    assert report.requests["wrong_replies"] == 0, report.summary()
