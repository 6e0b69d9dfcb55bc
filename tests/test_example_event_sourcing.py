"""docs/examples/event_sourcing.py runs and prints the balances it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "event_sourcing.py"

EXPECTED = """\
replayed 6 events: alice=75 bob=25 carol=20
live event 6: alice=75 bob=25 carol=100
live event 7: alice=75 bob=35 carol=100
live event 8: alice=0 bob=35 carol=100
statements projector stopped at offset 5
statements projector resumed and caught up: alice=0 bob=35 carol=100
final balances: alice=0 bob=35 carol=100
"""


def test_event_sourcing_example() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == EXPECTED
