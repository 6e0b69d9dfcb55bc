"""Run the Node.js client's scripts (tests/crosslang/node/) from pytest.

The cross-language tests talk to one broker from Python and from Node at
the same time. A Node script runs as a subprocess; it prints JSON lines
(events and results) that the test reads as they come, with a bound on
every wait, so nothing depends on sleeping. When node (>= 20) or the
client's npm dependencies are missing the tests are skipped, and the skip
says how to get them (``make node-deps``).
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "clients" / "node"
SCRIPTS = Path(__file__).resolve().parent / "node"
#: Seconds any single step may take before the test fails (never a sleep).
STEP_TIMEOUT = 30.0

NODE = shutil.which("node")


def _skip_reason() -> str | None:
    if NODE is None:
        return "node is not installed: the cross-language tests need Node.js >= 20"
    try:
        version = subprocess.run(
            [NODE, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return f"could not run node --version: {exc}"
    if major < 20:
        return f"node {version} is too old: the Node.js client needs Node >= 20"
    if not (CLIENT_DIR / "node_modules" / "@msgpack" / "msgpack").is_dir():
        return "the Node.js client's npm dependencies are not installed: run `make node-deps`"
    return None


SKIP_REASON = _skip_reason()
#: Mark for tests (or ``pytestmark``) that run Node scripts.
requires_node = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


class NodeScript:
    """One Node script as a subprocess: JSON lines in on stdin, out on stdout."""

    def __init__(self, script: str, *args: str) -> None:
        assert NODE is not None
        self.name = script
        self.proc = subprocess.Popen(
            [NODE, str(SCRIPTS / script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=SCRIPTS,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def send(self, order: dict[str, Any]) -> None:
        """Write one JSON line to the script's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(order) + "\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def next(self, timeout: float = STEP_TIMEOUT) -> Any:
        """The next JSON line the script printed (waits at most ``timeout``)."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"{self.name}: no output within {timeout} s; stderr:\n{self.stderr}"
            ) from None
        if line is None:
            self.proc.wait(timeout=timeout)
            raise AssertionError(
                f"{self.name} exited ({self.proc.returncode}) early; stderr:\n{self.stderr}"
            )
        return json.loads(line)

    def finish(self, timeout: float = STEP_TIMEOUT) -> None:
        """Wait for a clean exit."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout} s") from None
        assert code == 0, f"{self.name} exited with {code}; stderr:\n{self.stderr}"

    def __enter__(self) -> NodeScript:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
