"""Fixtures for the reliability tests: real ``minibroker serve`` processes.

The process harness lives in benchmarks/broker_process.py (the crash
campaign and the soak use it too), so the repository root goes on sys.path.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.broker_process import BrokerProcess  # noqa: E402


@pytest.fixture
def broker_processes() -> Iterator[list[BrokerProcess]]:
    """A list to put started servers in; every one of them is stopped at the end."""
    started: list[BrokerProcess] = []
    yield started
    for process in started:
        if process.alive():
            process.kill()
