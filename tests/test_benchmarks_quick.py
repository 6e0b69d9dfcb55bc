"""The benchmark harness still runs: ``python -m benchmarks --quick`` against minibroker.

This checks that the harness completes and that no run lost or corrupted a
message (no FAILED row). It asserts nothing about speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _client_missing() -> str | None:
    try:
        from minibroker import connect  # noqa: F401
    except ImportError as exc:
        return f"minibroker.connect is not importable yet ({exc})"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_client_missing() is not None, reason=str(_client_missing()))
def test_quick_benchmark_completes_without_failures(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--targets",
            "minibroker",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    results = json.loads((out / "results.json").read_text())
    failed = [m for m in results["measurements"] if m["status"] != "ok"]
    assert not failed, failed
    assert results["measurements"], f"nothing was measured: {results['skipped']}\n{log}"
    assert (out / "results.md").read_text().startswith("# Benchmark results")
    queue = next(m for m in results["measurements"] if m["metric"] == "queue")
    # The broker's CPU (the server the harness started) and each client role's are recorded.
    assert queue["extra"]["broker_cpu_s"] >= 0
    assert {"producer_cpu_per_msg_us", "producer_busy", "consumer_busy"} <= set(queue["extra"])
