"""The Client API block of docs/queues.md runs top to bottom (issue 18 item 12).

The block is taken verbatim from the page; only its connect line is
replaced by an in-process broker, and Trio's autojump clock makes its nack
delay instant.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import trio
import trio.testing

import minibroker

DOC = Path(__file__).resolve().parents[2] / "docs" / "queues.md"
CONNECT = 'async with minibroker.connect("minibroker://127.0.0.1:7878") as mb:'


def api_block() -> str:
    section = DOC.read_text().split("## Client API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "no python block under 'Client API'"
    return match.group(1)


async def test_the_client_api_block_runs_as_written(autojump_clock: trio.testing.MockClock) -> None:
    block = api_block()
    assert block.startswith(CONNECT + "\n")
    body = block.replace(CONNECT, "async with broker.connect() as mb:", 1)
    source = "async def run(broker):\n" + textwrap.indent(body, "    ")
    namespace: dict[str, object] = {"minibroker": minibroker}
    exec(compile(source, str(DOC), "exec"), namespace)
    async with minibroker.open_broker() as broker:
        await namespace["run"](broker)  # type: ignore[operator]
