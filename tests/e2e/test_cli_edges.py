"""The CLI's first-hour edges (issue 18 items 10 and 11), each through a
real ``python -m minibroker`` subprocess against the session's broker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

TIMEOUT = 60
SECRET = "sk_live_0123456789"


def cli(*argv: str, env: dict[str, str] | None = None, **options: Any) -> Any:
    """Run ``python -m minibroker ARGV`` to completion; text output captured."""
    return subprocess.run(
        [sys.executable, "-m", "minibroker", *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
        **options,
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ------------------------------------------------------- tokens (item 10)


def test_an_unreachable_broker_error_hides_the_token() -> None:
    url = f"minibroker://{SECRET}@127.0.0.1:{closed_port()}"
    for argv in (["queue", "stats", "q"], ["log", "read", "ev"], ["request", "svc", "x"]):
        done = cli(*argv, "--url", url)
        assert done.returncode == 1
        assert "cannot reach the broker at minibroker://***@127.0.0.1:" in done.stderr
        assert SECRET not in done.stderr + done.stdout


def test_help_shows_the_url_from_the_environment_without_its_token() -> None:
    url = f"minibroker://{SECRET}@127.0.0.1:7878"
    done = cli("queue", "stats", "--help", env={"MINIBROKER_URL": url})
    assert done.returncode == 0
    assert "minibroker://***@127.0.0.1:7878" in " ".join(done.stdout.split())
    assert SECRET not in done.stdout


def test_a_bad_url_error_hides_the_token() -> None:
    done = cli("queue", "stats", "q", "--url", f"minibroker://{SECRET}@h:1?namespce=x")
    assert done.returncode == 2
    assert SECRET not in done.stderr
