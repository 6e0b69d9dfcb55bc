"""W5 helpers: time a server from launch to its first successful operation.

The clock starts just before the server process is created and stops when a
client operation first succeeds (connection plus one request), so it includes
the interpreter or runtime start, the broker's own start and the client's
connect. After that the server sits idle for a second and its resident memory
is read (its own process plus any children).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.targets.base import log_tail, stop_process

IDLE_SECONDS = 1.0


def process_rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, in MiB (psutil, or /proc)."""
    try:
        import psutil
    except ImportError:
        return _proc_rss_kib(pid) / 1024
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return float(total) / 2**20


def _proc_rss_kib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def time_server_start(
    cmd: Sequence[str],
    first_op: Callable[[], None],
    log_path: Path,
    timeout: float = 30.0,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Launch ``cmd``, retry ``first_op`` (raises until the server answers), report
    ``{"metrics": {"startup_server": ms, "idle_rss": MiB}, "extra": {...}}``."""
    with log_path.open("wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        try:
            attempts = 0
            last_error = ""
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"server exited with code {proc.returncode}: {log_tail(log_path)}"
                    )
                if time.perf_counter() - t0 > timeout:
                    raise TimeoutError(
                        f"no successful operation within {timeout:.0f}s ({last_error})"
                    )
                attempts += 1
                try:
                    first_op()
                    break
                except Exception as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                    time.sleep(0.002)
            ready_ms = (time.perf_counter() - t0) * 1000
            time.sleep(IDLE_SECONDS)
            rss = process_rss_mib(proc.pid)
        finally:
            stop_process(proc)
    return {
        "metrics": {"startup_server": ready_ms, "idle_rss": rss},
        "extra": {"attempts": float(attempts)},
    }
