"""The topic commands of the ``minibroker`` CLI against the threaded test server.

``subscribe`` runs as a real subprocess (it handles SIGINT/SIGTERM, which
only the main thread of a process can); ``publish``, ``bind`` and ``unbind``
run in-process through ``minibroker.cli.main``.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

import minibroker
from minibroker.cli import main
from minibroker.client.protocol import Call
from minibroker.testing import ThreadedBroker

TIMEOUT = 60


def start_subscriber(url: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "minibroker", "subscribe", "--url", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # printed once the subscription is live
    assert line.startswith("subscribed to"), line + proc.stderr.read()
    return proc


def test_publish_and_subscribe_from_the_shell(
    minibroker_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = start_subscriber(minibroker_url, "orders.*", "--count", "3")
    try:
        assert main(["publish", "--url", minibroker_url, "orders.new", "one", "two"]) == 0
        assert "published 2 messages" in capsys.readouterr().out
        assert main(["publish", "--url", minibroker_url, "-q", "orders.old", "thrée"]) == 0
        out, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert out.splitlines() == ["orders.new one", "orders.new two", "orders.old thrée"]
    assert proc.returncode == 0


def test_subscribe_json_with_headers_and_publish_lines_from_stdin(
    minibroker_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = start_subscriber(minibroker_url, "logs.#", "--json", "-n", "3")
    try:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a\nb\r\nc")))
        code = main(["publish", "--url", minibroker_url, "logs.app", "-H", "level=info"])
        assert code == 0
        assert "published 3 messages to 'logs.app': 3 subscription deliveries" in (
            capsys.readouterr().out
        )
        out, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines == [
        {"topic": "logs.app", "body": body, "headers": {"level": "info"}} for body in "abc"
    ]


def test_publish_errors_exit_1_with_the_code(
    minibroker_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", "--url", minibroker_url, "bad.*", "x"]) == 1
    assert capsys.readouterr().err.startswith("error: invalid_name: ")
    assert main(["bind", "--url", minibroker_url, "missing", "a.#"]) == 1
    assert capsys.readouterr().err.startswith("error: not_found: ")


def test_bind_and_unbind_from_the_shell(
    minibroker_server: ThreadedBroker,
    minibroker_namespace: str,
    minibroker_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with minibroker.connect_sync(minibroker_url) as mb:
        mb._call(Call("queue.declare", {"queue": "audit"}))
    assert main(["bind", "--url", minibroker_url, "audit", "orders.#"]) == 0
    assert main(["publish", "--url", minibroker_url, "orders.x", "kept"]) == 0
    assert main(["unbind", "--url", minibroker_url, "audit", "orders.#"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "'audit' bound to 'orders.#'",
        "published 1 message to 'orders.x': 0 subscription deliveries, 1 queue deliveries",
        "'audit' unbound from 'orders.#'",
    ]
