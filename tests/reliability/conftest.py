"""Fixtures for the reliability tests: real ``minibroker serve`` processes.

The process harness lives in benchmarks/broker_process.py (the crash
campaign and the soak use it too); pyproject's pytest ``pythonpath`` puts
the repository root on sys.path for it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.broker_process import BrokerProcess


@pytest.fixture
def broker_processes() -> Iterator[list[BrokerProcess]]:
    """A list to put started servers in; every one of them is stopped at the end."""
    started: list[BrokerProcess] = []
    yield started
    for process in started:
        if process.alive():
            process.kill()
