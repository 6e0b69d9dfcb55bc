"""docs/operations.md matches the server: every ``serve`` flag, and every metric family.

The flags table is compared with the real ``minibroker serve`` parser (the
same one ``--help`` prints), the metrics table with a real scrape.
"""

from __future__ import annotations

import argparse
import os
import re
import urllib.request
from pathlib import Path

import pytest
import trio

import minibroker
from minibroker.cli import build_parser
from minibroker.client.rpc import IncomingRequest
from minibroker.config import ServerConfig

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def documented_families() -> set[str]:
    """The family names in the "Everything a scrape returns" table."""
    text = OPERATIONS.read_text()
    section = text.split("### Everything a scrape returns", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `minibroker_")]
    return {name for row in rows for name in re.findall(r"`(minibroker_\w+)`", row.split("|")[1])}


async def scrape() -> str:
    async with (
        minibroker.open_broker(config=ServerConfig(metrics_port=0)) as broker,
        broker.connect() as mb,
        trio.open_nursery() as nursery,
    ):
        await mb.declare_queue("jobs")
        await mb.put("jobs", b"job")
        await mb.create_log("events")
        await mb.append("events", b"event")
        await mb.commit("events", "projector", 1)

        async def echo(req: IncomingRequest) -> bytes:
            return bytes(req.body)

        await nursery.start(mb.serve, "svc.echo", echo)
        await mb.request("svc.echo", b"hi", timeout=5.0)
        url = f"http://127.0.0.1:{broker.server.metrics_port}/metrics"
        body: bytes = await trio.to_thread.run_sync(lambda: urllib.request.urlopen(url).read())
        nursery.cancel_scope.cancel()
    return body.decode()


async def test_operations_lists_every_exported_family() -> None:
    exported = set(re.findall(r"^# TYPE (minibroker_\w+) ", await scrape(), re.MULTILINE))
    assert exported, "the scrape exported no minibroker families"
    documented = documented_families()
    assert exported - documented == set(), "exported but not documented"
    assert documented - exported == set(), "documented but not exported"


def serve_parser() -> argparse.ArgumentParser:
    commands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    parser: argparse.ArgumentParser = commands.choices["serve"]
    return parser


def documented_flags() -> dict[str, tuple[str, str]]:
    """``--flag`` -> (environment variable, default cell) from the flags table."""
    text = OPERATIONS.read_text()
    section = text.split("## Flags and environment variables", 1)[1].split("\n## ", 1)[0]
    flags = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`--"):
            flags[cells[0].strip("`")] = (cells[1].strip("`"), cells[2])
    return flags


def test_operations_lists_every_serve_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MINIBROKER_")]:
        monkeypatch.delenv(name)
    actions = [a for a in serve_parser()._actions if a.option_strings != ["-h", "--help"]]
    documented = documented_flags()
    assert {a.option_strings[0] for a in actions} == set(documented)
    for action in actions:
        flag = action.option_strings[0]
        env, default = documented[flag]
        assert env == "MINIBROKER_" + action.dest.upper(), flag
        if action.default is None:
            assert default.startswith("none"), (flag, default)
        else:
            assert f"`{action.default}`" in default, (flag, action.default, default)
