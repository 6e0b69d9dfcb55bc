"""The queue commands of the ``minibroker`` CLI against a ``minibroker serve`` subprocess.

Most commands run in-process through ``minibroker.cli.main`` (fast, output
captured by pytest); one round trip runs the real ``python -m minibroker``
entry point, stdin pipe included.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

import minibroker
from minibroker.cli import main
from minibroker.testing import fresh_namespace

TIMEOUT = 60


class Server:
    """``python -m minibroker serve --port 0``, its port read from its log."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minibroker", "serve", "--port", "0"],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        lines: list[str] = []
        port = None
        for line in self.proc.stderr:
            lines.append(line)
            found = re.search(r"listening on \S+:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        if port is None:
            raise RuntimeError("the server did not start:\n" + "".join(lines))
        self.url = f"minibroker://127.0.0.1:{port}"
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(TIMEOUT)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


@pytest.fixture
def url(server: Server) -> str:
    return f"{server.url}?namespace={fresh_namespace('cli')}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_declare_put_fetch_stats_list_purge_delete(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    declare = ["queue", "declare", "jobs", "--url", url, "--visibility-timeout", "60"]
    assert run(capsys, *declare, "--max-deliveries", "3") == (0, "created\n", "")
    assert run(capsys, *declare, "--max-deliveries", "3") == (0, "exists (same options)\n", "")
    code, _, err = run(capsys, *declare)
    assert code == 1 and err.startswith("error: conflict: ")

    assert run(capsys, "put", "jobs", "one", "two", "--url", url) == (
        0,
        "put 2 messages into 'jobs'\n",
        "",
    )
    code, out, _ = run(capsys, "fetch", "jobs", "--max", "1", "--url", url)
    assert code == 0
    delivery_id, count, body = out.rstrip("\n").split("\t")
    assert (delivery_id.isdigit(), count, body) == (True, "1", "one")
    code, out, _ = run(capsys, "fetch", "jobs", "--json", "--no-ack", "--url", url)
    (line,) = out.splitlines()
    shown = json.loads(line)
    assert (shown["body"], shown["delivery_count"], shown["headers"]) == ("two", 1, {})

    code, out, _ = run(capsys, "queue", "stats", "jobs", "--json", "--url", url)
    stats = json.loads(out)
    # The --no-ack fetch's connection closed: its message is ready again.
    assert (stats["acked"], stats["ready"], stats["in_flight"], stats["requeued"]) == (1, 1, 0, 1)
    assert stats["options"]["max_deliveries"] == 3
    code, out, _ = run(capsys, "queue", "stats", "jobs", "--url", url)
    assert "ready              1" in out and "max_deliveries=3" in out

    code, out, _ = run(capsys, "queue", "list", "--url", url)
    assert out.splitlines()[1].split() == ["jobs", "1", "0", "0", "no"]
    code, out, _ = run(capsys, "queue", "list", "--json", "--url", url)
    assert json.loads(out)["queue"] == "jobs"
    assert run(capsys, "queue", "purge", "jobs", "--url", url) == (0, "purged 1 messages\n", "")
    assert run(capsys, "queue", "delete", "jobs", "--url", url) == (0, "deleted (0 messages)\n", "")
    code, _, err = run(capsys, "fetch", "jobs", "--url", url)
    assert code == 1 and err.startswith("error: not_found: ")


def test_declare_with_a_byte_limit(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    declare = ["queue", "declare", "small", "--url", url, "--max-length-bytes", "6"]
    assert run(capsys, *declare, "--overflow", "drop_head") == (0, "created\n", "")
    assert run(capsys, "put", "small", "one", "two", "three", "--url", url)[0] == 0
    code, out, _ = run(capsys, "queue", "stats", "small", "--json", "--url", url)
    assert code == 0
    stats = json.loads(out)
    assert stats["options"]["max_length_bytes"] == 6
    assert (stats["ready"], stats["dropped"]) == (1, 2)  # "three" alone fits in 6 bytes


def test_put_reads_stdin_lines_with_headers_and_fetch_can_reject(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, "queue", "declare", "dead", "--url", url)[0] == 0
    assert run(capsys, "queue", "declare", "q", "--dead-letter-queue", "dead", "--url", url)[0] == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a\nb\r\nc\n")))
    code, out, _ = run(capsys, "put", "q", "-H", "k=v", "--url", url)
    assert (code, out) == (0, "put 3 messages into 'q'\n")
    code, out, _ = run(capsys, "fetch", "q", "--max", "2", "--body-only", "--reject", "--url", url)
    assert out.splitlines() == ["a", "b"]
    code, out, _ = run(capsys, "fetch", "dead", "--max", "5", "--json", "--url", url)
    rejected = [json.loads(line) for line in out.splitlines()]
    assert [r["body"] for r in rejected] == ["a", "b"]
    assert rejected[0]["headers"]["k"] == "v"
    assert rejected[0]["headers"]["x-death-reason"] == "rejected"
    run(capsys, "queue", "declare", "empty", "--url", url)
    code, out, err = run(capsys, "fetch", "empty", "--wait", "0.1", "--url", url)
    assert (code, out, err) == (0, "", "no messages\n")
    with pytest.raises(SystemExit):
        main(["put", "q", "x", "-H", "no-equals-sign", "--url", url])


def test_bad_options_and_an_unreachable_broker_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "queue", "declare", "q", "--url", "minibroker://127.0.0.1:1", "--durable"
    )
    assert code == 1 and err.startswith("error: cannot reach the broker at ")


@pytest.mark.parametrize(
    "argv",
    [
        ["queue", "declare", "q", "--max-length", "99999999999999999999999"],
        ["fetch", "q", "--max", "-99999999999999999999999"],
        ["log", "create", "events", "--retention-bytes", "99999999999999999999999"],
        ["log", "read", "events", "--timestamp-ms", "99999999999999999999999"],
    ],
)
def test_an_integer_the_wire_cannot_carry_is_a_usage_error(
    url: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # It reached the msgpack encoder and ended in an OverflowError traceback.
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--url", url])
    assert exit_info.value.code == 2
    assert "is out of range (at most 9223372036854775807)" in capsys.readouterr().err


def test_a_start_offset_the_wire_cannot_carry_is_one_line(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit, match="--start 99999999999999999999999 is out of range"):
        main(["log", "read", "events", "--start", "99999999999999999999999", "--url", url])


def test_the_real_entry_point_with_a_pipe(url: str) -> None:
    put = subprocess.run(
        [sys.executable, "-m", "minibroker", "put", "piped", "--url", url, "-q"],
        input=b"".join(b"line %d\n" % i for i in range(2500)),
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert put.returncode == 1 and b"not_found" in put.stderr  # no such queue yet
    with minibroker.connect_sync(url) as mb:
        mb.declare_queue("piped", durable=True)
    put = subprocess.run(
        [sys.executable, "-m", "minibroker", "put", "piped", "--url", url, "-q"],
        input=b"".join(b"line %d\n" % i for i in range(2500)),
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert (put.returncode, put.stdout) == (0, b"")
    fetched = subprocess.run(
        [sys.executable, "-m", "minibroker", "fetch", "piped", "--max", "3000", "--body-only"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "MINIBROKER_URL": url},
    )
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.splitlines() == [f"line {i}" for i in range(2500)]
    with minibroker.connect_sync(url) as mb:
        stats = mb.queue_stats("piped")
    assert (stats.published, stats.acked, stats.ready) == (2500, 2500, 0)
