"""``--profile``: record a py-spy flame graph of the minibroker server per scenario.

py-spy attaches to the server process the harness started (no restart, no code
change) for the length of one scenario and writes an SVG named after it into
``<out>/profiles/``. py-spy is optional (``pip install py-spy``); without it
the run goes on unprofiled, with one line saying so.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

SAMPLE_RATE = 250  # Hz


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.is_file() else shutil.which("py-spy")


class ServerProfile:
    """``with ServerProfile(pid, path):`` records while the block runs."""

    def __init__(self, binary: str, pid: int, svg: Path) -> None:
        self.binary, self.pid, self.svg = binary, pid, svg
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProfile:
        self.svg.parent.mkdir(parents=True, exist_ok=True)
        log = self.svg.with_suffix(".log").open("wb")
        cmd = [
            self.binary,
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            str(SAMPLE_RATE),
            "--idle",
            "--output",
            str(self.svg),
            "--format",
            "flamegraph",
        ]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes the SVG on SIGINT
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def profile_path(out: Path, target: str, label: str, client: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", f"{target} {label} {client.split(' ')[0]}".lower()).strip("-")
    return out / "profiles" / f"{slug}.svg"


def maybe_profile(
    binary: str | None, pid: int | None, svg: Path
) -> contextlib.AbstractContextManager[object]:
    if binary is None or pid is None:
        return contextlib.nullcontext()
    return ServerProfile(binary, pid, svg)
