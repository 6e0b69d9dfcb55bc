"""Shared test configuration: Hypothesis profiles sized for a 2-core machine, memory tracing."""

from __future__ import annotations

import gc
import os
import signal
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# "default" keeps `make test` within minutes; "thorough" is for long runs:
#   HYPOTHESIS_PROFILE=thorough make test
settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
pytest_plugins = ["pytester"]

# A shell starting the suite in the background (`make test &`, nohup, a job
# runner without job control) hands it SIGINT ignored, and Python then installs
# no KeyboardInterrupt handler: the tests of Ctrl-C (tests/client/
# test_serving_cancel.py) failed, one waited forever, and every child process
# (ignored signals survive exec) shrugged off the SIGINT its test sent. Caught
# instead, SIGINT raises KeyboardInterrupt here and is reset to the default in
# every child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def traced_memory() -> Iterator[None]:
    """Trace Python allocations for the test (``tracemalloc.get_traced_memory``),
    starting from a collected heap."""
    gc.collect()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
