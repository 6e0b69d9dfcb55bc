"""``minibroker serve`` as a real subprocess: start, connect, scrape /metrics, SIGTERM.

The tests never sleep: they read the server's log on stderr and act on the
start line, which reports the bound ports (port 0 picks free ones).
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import minibroker
from minibroker.errors import Unauthorized

pytestmark = pytest.mark.slow

#: The start line: "minibroker 0.1.0 listening on 127.0.0.1:PORT (... metrics=URL)".
START_LINE = re.compile(
    r"minibroker \S+ listening on (?P<host>[^ ]+):(?P<port>\d+) \((?P<settings>.*)\)"
)
METRICS = re.compile(r"metrics=(?:http://(?P<host>[^/ ]+):(?P<port>\d+)/metrics|off)")
#: Generous bounds: only ever reached when something is broken.
START_TIMEOUT = 30
STOP_TIMEOUT = 20


@dataclass
class ServeProcess:
    process: trio.Process
    port: int = 0
    metrics_port: int | None = None
    settings: str = ""
    log: list[str] = field(default_factory=list)
    _buffer: bytes = b""

    async def read_line(self) -> str | None:
        """The next line of the server's stderr, or None at EOF."""
        assert self.process.stderr is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stderr.receive_some(65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        text = line.decode(errors="replace")
        self.log.append(text)
        return text

    async def wait_for_line(self, pattern: re.Pattern[str]) -> re.Match[str]:
        while (line := await self.read_line()) is not None:
            if match := pattern.search(line):
                return match
        raise AssertionError("server exited before logging the expected line:\n" + self.logs())

    async def read_rest(self) -> None:
        while await self.read_line() is not None:
            pass

    def logs(self) -> str:
        return "\n".join(self.log)

    @property
    def url(self) -> str:
        return f"minibroker://127.0.0.1:{self.port}"


@asynccontextmanager
async def serve(
    *args: str, env: Mapping[str, str] | None = None, **options: Any
) -> AsyncIterator[ServeProcess]:
    """Run ``python -m minibroker serve ARGS``; yields once its start line is logged.

    ``options`` go to the process creation (e.g. ``preexec_fn``)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MINIBROKER_")}
    environment.update(env or {})
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "minibroker", "serve", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment,
        **options,
    )
    served = ServeProcess(process)
    try:
        with trio.fail_after(START_TIMEOUT):
            start = await served.wait_for_line(START_LINE)
        served.port = int(start["port"])
        served.settings = start["settings"]
        metrics = METRICS.search(served.settings)
        assert metrics is not None, served.settings
        if metrics["port"]:
            served.metrics_port = int(metrics["port"])
        yield served
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        assert process.stderr is not None
        await process.stderr.aclose()


async def stop(served: ServeProcess, signum: int = signal.SIGTERM) -> int:
    """Send ``signum``; the server must log its shutdown and exit within STOP_TIMEOUT."""
    served.process.send_signal(signum)
    with trio.fail_after(STOP_TIMEOUT):
        await served.read_rest()
        return await served.process.wait()


async def scrape(port: int) -> dict[str, float]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /metrics HTTP/1.0\r\n\r\n")
    response = b""
    while chunk := await stream.receive_some(65536):
        response += chunk
    await stream.aclose()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            values[sample.name] = sample.value
    return values


async def test_serve_connect_scrape_and_sigterm() -> None:
    async with serve("--port", "0", "--metrics-port", "0") as served:
        assert served.port not in (0, 7878)
        assert served.metrics_port is not None and served.metrics_port != 0
        assert "fsync=batch" in served.settings
        assert "tls=off" in served.settings and "auth=off" in served.settings

        async with minibroker.connect(served.url, client_name="cli-test") as mb:
            assert await mb.ping(b"over tcp") == b"over tcp"
            await mb.ping()
            metrics = await scrape(served.metrics_port)
            assert metrics["minibroker_connections"] == 1
            assert metrics["minibroker_connections_accepted_total"] == 1
            assert metrics["minibroker_frames_in_total"] == 3  # hello and two pings
            assert metrics["minibroker_frames_out_total"] == 3
            assert metrics["minibroker_bytes_in_total"] > 0

        # The server logs the close (with the client's name) once it is done.
        with trio.fail_after(STOP_TIMEOUT):
            await served.wait_for_line(
                re.compile(r"connection 1 from 127\.0\.0\.1:\d+ closed \(cli-test\)")
            )
        metrics = await scrape(served.metrics_port)
        assert metrics["minibroker_connections"] == 0

        status = await stop(served)
        assert status == 0, served.logs()
        assert "received SIGTERM, shutting down" in served.logs()
        assert "stopped" in served.log[-1]
        assert re.search(r"connection 1 opened from 127\.0\.0\.1:\d+", served.logs())


async def test_sigterm_with_a_connected_client() -> None:
    """Clients still connected are told the server is going, and it still exits 0."""
    async with serve("--port", "0") as served:
        assert served.metrics_port is None
        async with minibroker.connect(served.url) as mb:
            assert await mb.ping() is None
            status = await stop(served)
            assert status == 0, served.logs()
            with pytest.raises(minibroker.BrokerError):
                await mb.ping()
        assert "shutting down: 1 connections to close" in served.logs()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_environment_and_auth_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# test tokens\nci:s3cret\n")
    port = free_port()
    env = {"MINIBROKER_PORT": str(port), "MINIBROKER_AUTH_FILE": str(tokens)}
    async with serve(env=env) as served:
        assert served.port == port
        assert "auth=token" in served.settings
        with pytest.raises(Unauthorized):
            async with minibroker.connect(served.url, token="wrong"):
                pass  # pragma: no cover
        async with minibroker.connect(served.url, token="s3cret") as mb:
            assert await mb.ping(b"authorized") == b"authorized"
        assert await stop(served, signal.SIGINT) == 0, served.logs()
        assert "received SIGINT" in served.logs()


async def test_port_in_use_fails_cleanly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await trio.run_process(
            [sys.executable, "-m", "minibroker", "serve", "--port", str(port)],
            capture_stderr=True,
            check=False,
        )
    assert result.returncode != 0
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    assert str(port).encode() in result.stderr


@pytest.mark.slow
def test_a_second_broker_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    """Two brokers on one data directory would corrupt it: the second says why and exits."""
    first = subprocess.Popen(
        [sys.executable, "-m", "minibroker", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stderr is not None
        for line in first.stderr:
            if "listening on" in line:
                break
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "minibroker",
                "serve",
                "--port",
                "0",
                "--data-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1
        assert "in use by another running broker" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.terminate()
        first.wait(timeout=30)


KAFKA_LINE = re.compile(r"kafka front end listening on 127\.0\.0\.1:(?P<port>\d+)")


async def test_serve_with_a_kafka_port_takes_kafka_producers() -> None:
    async with serve("--port", "0", "--kafka-port", "0", "--kafka-partitions", "2") as served:
        found = [match for line in served.log if (match := KAFKA_LINE.search(line))]
        assert found, served.logs()
        bootstrap = f"127.0.0.1:{found[0]['port']}"

        def produce() -> None:
            from confluent_kafka import Producer

            producer = Producer({"bootstrap.servers": bootstrap})
            producer.produce("clicks", b"first", partition=1)
            assert producer.flush(20) == 0

        await trio.to_thread.run_sync(produce)
        async with minibroker.connect(served.url) as client:
            # auto-created, with two partitions
            assert await client.list_logs() == ["clicks-0", "clicks-1"]
            assert [r.body for r in await client.read("clicks-1")] == [b"first"]
        assert await stop(served) == 0


def _lower_open_file_limit() -> None:
    """In the child before exec: a soft limit far below the hard one, as many systems ship."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))


async def test_serve_raises_the_soft_open_file_limit_to_the_hard_one() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    async with serve("--port", "0", preexec_fn=_lower_open_file_limit) as served:
        assert "raised the open-file limit from 256 to" in served.logs()
        limits = Path(f"/proc/{served.process.pid}/limits").read_text()
        [line] = [row for row in limits.splitlines() if row.startswith("Max open files")]
        soft_now = int(line.split()[3])
        assert soft_now > 256
        if hard != resource.RLIM_INFINITY:
            assert soft_now == hard
        assert await stop(served) == 0
