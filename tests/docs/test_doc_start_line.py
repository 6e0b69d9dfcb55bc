"""docs/operations.md's sample start line has the fields of the real one
(issue 18 item 12): a script that parses the line from the docs must meet
the same fields, in the same order, at start-up."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

import minibroker
from minibroker.config import ServerConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def fields(line: str) -> list[str]:
    """``listening on`` and every ``name=`` inside the parentheses, in order."""
    settings = line[line.index("(") + 1 : line.rindex(")")]
    return ["listening on", *re.findall(r"(?:^|, )([a-z_]+)=", settings)]


def documented_line() -> str:
    start = DOC.read_text().split("## Starting", 1)[1]
    [line] = [ln for ln in start.splitlines() if " listening on " in ln and ln.startswith("20")]
    return line


async def test_the_documented_start_line_matches_the_real_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="minibroker.server"):
        async with minibroker.open_broker(listen=True, config=ServerConfig(metrics_port=0)):
            pass
    [real] = [r.getMessage() for r in caplog.records if " listening on " in r.getMessage()]
    assert fields(documented_line()) == fields(real)
