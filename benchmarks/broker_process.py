"""A real ``python -m minibroker serve`` process, for the crash campaign, the soak
and the reliability tests.

``BrokerProcess.start(data_dir, ...)`` launches the server on port 0, reads
the port from its start-up line, keeps draining its log (stderr) in a thread
so that it never blocks on a full pipe, and offers what those harnesses need:
``kill()`` (SIGKILL, no goodbye), ``stop()`` (SIGTERM, graceful), ``rss_bytes()``
from /proc, the log lines so far (``log``, ``log_text()``) and a wait for a
line to come (``wait_for_line()``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

#: "minibroker 0.1.0 listening on 127.0.0.1:PORT (...)"
_LISTENING = re.compile(r"minibroker \S+ listening on \S+:(\d+)")
#: A guard against a server that never starts, not a speed limit: at load 15 on
#: two cores a restart that recovers a large data dir has taken over 30 s.
START_TIMEOUT = 120.0


class BrokerProcess:
    """One ``minibroker serve`` child process."""

    def __init__(self, proc: subprocess.Popen[str], port: int, log: list[str]) -> None:
        self.proc = proc
        self.port = port
        #: Every line the server has logged so far (appended by a reader thread).
        self.log = log
        #: Notified by the reader thread at every new line (and at the end of the log).
        self._new_line = threading.Condition()
        self._ended = False
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    @classmethod
    def start(
        cls,
        data_dir: str | os.PathLike[str] | None = None,
        *extra_args: str,
        env: dict[str, str] | None = None,
        log_level: str = "info",
        start_timeout: float = START_TIMEOUT,
    ) -> BrokerProcess:
        """Launch the server and return once it accepts connections.

        ``log_level`` must be info or debug: the start-up line that gives the
        port is logged at info. A server not listening after
        ``start_timeout`` seconds is killed and reported as failing to start.
        """
        proc = _launch(data_dir, extra_args, env, log_level, subprocess.PIPE)
        assert proc.stderr is not None
        log: list[str] = []
        timer = threading.Timer(start_timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stderr:
                log.append(line)
                found = _LISTENING.search(line)
                if found:
                    return cls(proc, int(found.group(1)), log)
        finally:
            timer.cancel()
        proc.wait()
        raise RuntimeError(
            f"minibroker serve exited ({proc.returncode}) before listening:\n" + "".join(log)
        )

    @staticmethod
    def launch_and_kill(
        after_seconds: float, data_dir: str | os.PathLike[str], *extra_args: str
    ) -> None:
        """Start a server and SIGKILL it ``after_seconds`` later, ready or not
        (to crash it in the middle of start-up recovery)."""
        proc = _launch(data_dir, extra_args, None, "warning", subprocess.DEVNULL)
        time.sleep(after_seconds)
        proc.kill()
        proc.wait(30)

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._new_line:
                self.log.append(line)
                self._new_line.notify_all()
        with self._new_line:
            self._ended = True
            self._new_line.notify_all()

    @property
    def url(self) -> str:
        return f"minibroker://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return "".join(self.log)

    def lines_matching(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        return [line for line in list(self.log) if regex.search(line)]

    def wait_for_line(self, pattern: str, *, after: int = 0, timeout: float = 30.0) -> int:
        """Index in ``log`` of the first line from ``after`` on that matches
        ``pattern``, waiting for the server to log it; TimeoutError if it does
        not within ``timeout`` seconds or the server's log ends first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = after
        with self._new_line:
            while True:
                for index in range(seen, len(self.log)):
                    if regex.search(self.log[index]):
                        return index
                seen = len(self.log)
                left = deadline - time.monotonic()
                if self._ended or left <= 0:
                    raise TimeoutError(f"the server logged no line matching {pattern!r}")
                self._new_line.wait(left)

    def rss_bytes(self) -> int:
        """Resident memory of the server process, from /proc/PID/status (Linux)."""
        return rss_of(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush, close or say goodbye."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(5)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for the graceful shutdown; returns the exit status."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)
        return self.proc.returncode

    def __enter__(self) -> BrokerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _launch(
    data_dir: str | os.PathLike[str] | None,
    extra_args: Sequence[str],
    env: dict[str, str] | None,
    log_level: str,
    stderr: int,
) -> subprocess.Popen[str]:
    args: list[str] = [sys.executable, "-m", "minibroker", "serve", "--port", "0"]
    if data_dir is not None:
        args += ["--data-dir", os.fspath(data_dir)]
    args += ["--log-level", log_level, *extra_args]
    child_env = {**os.environ, **(env or {})}
    # Settings come from the arguments (and ``env``) only, not from the caller's shell.
    for name in list(child_env):
        if name.startswith("MINIBROKER_") and (env is None or name not in env):
            del child_env[name]
    return subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        env=child_env,
    )


def rss_of(pid: int) -> int:
    """VmRSS of process ``pid`` in bytes (0 if the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def serve_args(**flags: object) -> Sequence[str]:
    """``--flag value`` arguments from keyword arguments (``hello_timeout=1``)."""
    out: list[str] = []
    for name, value in flags.items():
        out += ["--" + name.replace("_", "-"), str(value)]
    return out
