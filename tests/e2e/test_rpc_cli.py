"""``minibroker request`` and ``minibroker respond`` against the threaded TCP broker."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest

import minibroker
from minibroker.cli import main
from minibroker.client.rpc import Reply


def test_request_prints_the_reply_body(
    minibroker_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with minibroker.connect_sync(minibroker_url) as mb, mb.respond("svc.cli") as requests:

        def answer() -> None:
            req = requests.get(timeout=30)
            header = (req.headers or {}).get("a", "")
            req.reply(b"got " + req.body + b" " + header.encode(), {"x": "y"})

        thread = threading.Thread(target=answer)
        thread.start()
        code = main(["request", "--url", minibroker_url, "svc.cli", "hello", "-H", "a=b"])
        thread.join(30)
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "got hello b\n"  # a newline after the body (--raw: exactly the body)
    assert "x: y" in err


def test_request_reports_errors_with_their_code(
    minibroker_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["request", "--url", minibroker_url, "svc.nobody"]) == 1
    assert "error: no_responders:" in capsys.readouterr().err
    assert main(["request", "--url", minibroker_url, "bad subject"]) == 1
    assert "error: invalid_name:" in capsys.readouterr().err


def test_respond_echo_until_interrupted(minibroker_url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "minibroker", "respond", "svc.echo", "--url", minibroker_url],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        assert "responding to 'svc.echo'" in banner
        with minibroker.connect_sync(minibroker_url) as mb:
            assert mb.request("svc.echo", b"ping", {"h": "1"}) == Reply(b"ping", {"h": "1"})
        assert "svc.echo: 'ping'" in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
