"""The :class:`Target` abstraction and helpers shared by the targets.

A target knows how to reach (or start) one broker and, per workload, lists the
:class:`~benchmarks.workloads.Impl` objects that drive it: which role functions
run in the child processes and with which parameters. The role functions live
in the same module as the target, take a
:class:`~benchmarks.child.RoleContext` and return a report following the
contract in :mod:`benchmarks.workloads`. Keep client imports inside the role
functions, so importing a target module never needs its client library.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from benchmarks.config import HOST, RunConfig
from benchmarks.workloads import Impl


class Target(ABC):
    name: str = ""
    title: str = ""

    def __init__(self, cfg: RunConfig, log_dir: Path) -> None:
        self.cfg = cfg
        self.log_dir = log_dir

    @abstractmethod
    def setup(self) -> str | None:
        """Reach or start the broker. Return None when usable, else why it is skipped."""

    def teardown(self) -> None:  # noqa: B027 - optional hook, most targets start nothing
        """Stop whatever :meth:`setup` started."""

    def versions(self) -> dict[str, str]:
        """Server and client library versions, for the report."""
        return {}

    def notes(self) -> list[str]:
        """How this target is configured, one sentence each, for the report."""
        return []

    def server_pid(self) -> int | None:
        """The pid of the server process this target started, for ``--profile``."""
        return None

    def cpu_pid(self) -> int | None:
        """The pid whose CPU time is the broker's cost of a scenario (see
        :func:`process_cpu_seconds`): the server this target started, or a running
        service found by its port. None when unknown (no broker CPU reported)."""
        return self.server_pid()

    def unavailable(self, workload: str) -> str | None:
        """Why this target cannot run ``workload`` yet (e.g. a client method that does not
        exist yet); None when it can. Reported as a skip line, not as a failure."""
        return None

    def impls(self, workload: str) -> list[Impl]:
        """The ways this target runs a workload; empty when it does not take part."""
        return []


# --- helpers --------------------------------------------------------------------


def port_open(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def listener_pid(port: int, host: str = HOST) -> int | None:
    """The pid of the process listening on ``host:port`` (None if unknown or not visible)."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            listening = conn.status == psutil.CONN_LISTEN and conn.laddr and conn.pid
            if listening and conn.laddr.port == port and conn.laddr.ip in (host, "0.0.0.0", "::"):
                return int(conn.pid)
    except (ImportError, OSError):
        return None
    return None


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc; None if unreadable)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate()`` every 20 ms until true or ``timeout`` seconds pass."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL: the process we started, by its own handle."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
