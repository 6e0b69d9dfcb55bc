"""The testing guide's snippets pass: run docs/examples/testing as a user would.

The files there are ordinary pytest modules that use the fixtures of the
``minibroker.testing`` plugin (registered through its entry point) and
pytest-trio's clocks. They run in a pytest of their own, in a subprocess, so
that they see the plugin exactly as a user's suite does, with none of this
suite's conftest. That docs/testing.md shows them verbatim is checked in
test_doc_links.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples" / "testing"


def test_the_testing_guide_examples_pass() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None, summary
    assert int(passed.group(1)) >= 15, summary
    assert not re.search(r"skipped|xfail|warnings?", summary), summary


def test_every_example_file_is_in_the_guide() -> None:
    guide = (ROOT / "docs" / "testing.md").read_text()
    for path in sorted(EXAMPLES.glob("test_*.py")):
        assert f"docs/examples/testing/{path.name}#" in guide, path.name


def test_the_threaded_broker_section_says_autojump_does_not_reach_it() -> None:
    """Where minibroker_url is shown, the guide warns that a Trio test's
    autojump_clock does not move the threaded broker's clock, and points to
    advance() (issue 18 item 3)."""
    guide = (ROOT / "docs" / "testing.md").read_text()
    section = guide.split("## Blocking and asyncio code", 1)[1].split("\n## ", 1)[0]
    assert "autojump_clock" in section
    assert "minibroker_server.advance(seconds)" in section
