"""``make test`` runs every part and ends with one line summing them all up
(issue 18 item 12). Driven through the real Makefile with stand-in tools:
a fake venv whose ruff, mypy and pytest only record that they ran."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def fake_project(tmp_path: Path, failing: str | None) -> dict[str, str]:
    """A venv and a Node client directory the Makefile takes as up to date."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("ruff", "mypy", "lint-imports", "pytest"):
        script = bin_dir / tool
        status = 1 if tool == failing else 0
        script.write_text(f"#!/bin/sh\necho ran >> {tmp_path}/{tool}.ran\nexit {status}\n")
        script.chmod(0o755)
    (tmp_path / "venv" / ".installed").touch()  # newer than pyproject.toml
    node = tmp_path / "node"
    (node / "test").mkdir(parents=True)
    (node / "package-lock.json").write_text("{}")
    (node / "node_modules").mkdir()
    (node / "node_modules" / ".installed").touch()
    (node / "test" / "ok.test.js").write_text(
        'import { test } from "node:test";\ntest("ok", () => {});\n'
    )
    return {"VENV": str(tmp_path / "venv"), "NODE_CLIENT": str(node)}


def make_test(tmp_path: Path, failing: str | None) -> subprocess.CompletedProcess[str]:
    variables = fake_project(tmp_path, failing)
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "test"]
        + [f"{k}={v}" for k, v in variables.items()],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MAKEFLAGS": ""},
    )


def summary(output: str) -> str:
    return re.sub(r"\(\d+ s\)", "(N s)", output.strip().splitlines()[-1])


def test_make_test_ends_with_one_line_for_every_part(tmp_path: Path) -> None:
    done = make_test(tmp_path, failing=None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert summary(done.stdout) == (
        "make test: lint ok (N s), typecheck ok (N s), imports ok (N s), pytest ok (N s), "
        "node-test ok (N s)"
    )


def test_a_failing_part_is_named_and_the_others_still_run(tmp_path: Path) -> None:
    done = make_test(tmp_path, failing="mypy")
    assert done.returncode != 0
    assert summary(done.stdout) == (
        "make test: lint ok (N s), typecheck FAILED (N s), imports ok (N s), pytest ok (N s), "
        "node-test ok (N s)"
    )
    assert (tmp_path / "pytest.ran").exists()
