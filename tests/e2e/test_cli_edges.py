"""The CLI's first-hour edges (issue 18 items 10 and 11), each through a
real ``python -m minibroker`` subprocess against the session's broker."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
from typing import Any

import minibroker

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


# ------------------------------------------------- pipes and URLs (item 11)


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(minibroker_url: str) -> None:
    """``minibroker ... | head -c 10``: the reader went away, the broker is fine."""
    with minibroker.connect_sync(minibroker_url) as mb:
        mb.declare_queue("q")
    command = [sys.executable, "-m", "minibroker", "queue", "stats", "q", "--json"]
    with subprocess.Popen(
        [*command, "--url", minibroker_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # before it writes anything: its write must meet EPIPE
        stderr = proc.stderr.read()
        assert proc.wait(TIMEOUT) == 128 + 13
    assert stderr == b""


def test_a_url_with_another_scheme_is_a_one_line_error() -> None:
    done = cli("queue", "stats", "q", "--url", "http://127.0.0.1:7878")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "unsupported URL scheme 'http'" in done.stderr
    assert "use minibroker://" in done.stderr


def test_request_ends_its_output_with_a_newline_unless_raw(minibroker_url: str) -> None:
    with (
        minibroker.connect_sync(minibroker_url) as mb,
        mb.respond("svc.echo") as requests,
    ):
        answered = threading.Thread(target=_echo, args=(requests, 2), daemon=True)
        answered.start()
        plain = cli("request", "svc.echo", "hi", "--url", minibroker_url)
        raw = cli("request", "svc.echo", "hi", "--raw", "--url", minibroker_url)
        answered.join(TIMEOUT)
    assert (plain.returncode, plain.stdout) == (0, "hi\n")
    assert (raw.returncode, raw.stdout) == (0, "hi")


def _echo(requests: Any, count: int) -> None:
    for request in itertools.islice(requests, count):
        request.reply(request.body)


def test_fetch_and_log_read_explain_their_columns_in_help() -> None:
    fetch = " ".join(cli("fetch", "--help").stdout.split())
    assert "DELIVERY_ID<TAB>DELIVERY_COUNT<TAB>BODY" in fetch
    assert "--json" in fetch
    for action in ("read", "tail"):
        text = " ".join(cli("log", action, "--help").stdout.split())
        assert "OFFSET<TAB>KEY<TAB>BODY" in text
        assert "--json" in text


def test_log_append_from_a_pipe_says_what_each_line_is(minibroker_url: str) -> None:
    with minibroker.connect_sync(minibroker_url) as mb:
        mb.create_log("events")
    lines = "".join(f"event {i}\n" for i in range(1500))
    done = cli("log", "append", "events", "--url", minibroker_url, input=lines)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "appended 1000 records to 'events' at offsets 0-999",
        "appended 500 records to 'events' at offsets 1000-1499",
    ]


# ------------------------------------------------------ namespaces (item 9)


def test_namespace_drop_from_the_shell(minibroker_server: Any) -> None:
    name = "cli-drop-me"
    with minibroker.connect_sync(minibroker_server.url_for(name)) as mb:
        mb.declare_queue("jobs")
    done = cli("namespace", "drop", name, "--url", minibroker_server.url)
    assert (done.returncode, done.stdout) == (0, f"dropped namespace '{name}'\n")
    assert name not in minibroker_server.server.broker.namespaces
    again = cli("namespace", "drop", name, "--url", minibroker_server.url)
    assert (again.returncode, again.stdout) == (0, f"no namespace '{name}'\n")
