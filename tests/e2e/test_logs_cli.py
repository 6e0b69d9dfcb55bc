"""``minibroker log ...`` against the threaded TCP broker."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys

import pytest

import minibroker
from minibroker.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["log", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_create_append_read_stats_list_delete(
    minibroker_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = ["--url", minibroker_url]
    assert run(capsys, "create", *url, "ev", "--retention-bytes", "100000")[:2] == (0, "created\n")
    assert run(capsys, "create", *url, "ev", "--retention-bytes", "100000")[1].startswith("exists")
    assert run(capsys, "append", *url, "ev", "one", "two")[:2] == (
        0,
        "appended 2 records to 'ev' at offsets 0-1\n",
    )

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"three\nfour\n")))
    assert run(capsys, "append", *url, "ev", "--key", "k", "-H", "a=b")[:2] == (
        0,
        "appended 2 records to 'ev' at offsets 2-3\n",
    )

    code, out, _ = run(capsys, "read", *url, "ev")
    assert code == 0
    assert out == "0\t\tone\n1\t\ttwo\n2\tk\tthree\n3\tk\tfour\n"
    _, out, _ = run(capsys, "read", *url, "ev", "--start", "2", "--max", "1", "--json")
    line = json.loads(out)
    assert (line["offset"], line["key"], line["headers"], line["body"]) == (
        2,
        "k",
        {"a": "b"},
        "three",
    )
    _, out, _ = run(capsys, "read", *url, "ev", "--start", "0", "--body-only", "--max", "2")
    assert out == "one\ntwo\n"

    # With a group, read starts at the group's commit and commits what it printed.
    assert run(capsys, "read", *url, "ev", "--group", "g", "--max", "3")[1].count("\n") == 3
    assert run(capsys, "read", *url, "ev", "--group", "g", "--body-only")[1] == "four\n"

    code, out, _ = run(capsys, "stats", *url, "ev")
    assert code == 0
    assert "offsets        [0, 4)" in out and "group g: committed 4, lag 0" in out
    assert run(capsys, "list", *url)[1] == "ev\n"
    assert run(capsys, "delete", *url, "ev")[1] == "deleted (4 records)\n"
    code, _, err = run(capsys, "read", *url, "ev")
    assert code == 1 and err.startswith("error: not_found:")


def test_tail_prints_records_as_they_arrive(minibroker_url: str) -> None:
    with minibroker.connect_sync(minibroker_url) as mb:
        mb.create_log("live")
        mb.append_many("live", [b"old"])
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "minibroker",
                "log",
                "tail",
                "live",
                "--url",
                minibroker_url,
                "--start",
                "earliest",
                "--group",
                "cli",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stderr is not None
            assert "tailing 'live' from offset 0" in proc.stderr.readline()
            assert proc.stdout.readline() == "0\t\told\n"
            mb.append("live", b"new", key=b"k")
            assert proc.stdout.readline() == "1\tk\tnew\n"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # Ctrl-C left the tail; the group's commit covers what was printed.
        assert mb.committed("live", "cli") == 2
