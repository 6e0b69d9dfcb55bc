"""What a user installs: the wheel carries the licence, and the ``testing``
extra brings only what the pytest plugin needs (issue 18 item 12)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [built] = out.glob("minibroker-*.whl")
    return zipfile.ZipFile(built)


def metadata(wheel: zipfile.ZipFile) -> dict[str, list[str]]:
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    message = Parser().parsestr(wheel.read(name).decode())
    return {key: message.get_all(key) or [] for key in ("Requires-Dist", "Provides-Extra")}


@pytest.mark.slow
def test_the_wheel_carries_the_licence(wheel: zipfile.ZipFile) -> None:
    [licence] = [n for n in wheel.namelist() if n.endswith("/LICENSE")]
    assert "MIT License" in wheel.read(licence).decode()


@pytest.mark.slow
def test_the_testing_extra_is_pytest_and_pytest_trio_only(wheel: zipfile.ZipFile) -> None:
    requires = metadata(wheel)["Requires-Dist"]
    testing = sorted(r.split(">=")[0] for r in requires if 'extra == "testing"' in r)
    assert testing == ["pytest", "pytest-trio"]
    dev = " ".join(r for r in requires if 'extra == "dev"' in r)
    for tool in ("ruff", "mypy", "hypothesis", "trustme"):
        assert tool in dev
