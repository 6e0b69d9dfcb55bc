"""``minibroker serve`` loads a front end only when its port is asked for.

Start-up time is mostly import time, so a broker serving only the msgpack
port must not import pamqp, kio, hypercorn, starlette, prometheus_client or
minibroker's own AMQP, Kafka, SQS and HTTP packages (docs/operations.md,
"Start-up"). The real command runs with ``PYTHONPROFILEIMPORTTIME=1``, so its
stderr names every module it imports, through start and a first operation.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import minibroker
from tests.cli.test_serve_process import serve, stop  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow

#: ``python -X importtime`` output: "import time: self | cumulative | name".
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| +(?P<module>\S+)$")
IMPORTTIME = {"PYTHONPROFILEIMPORTTIME": "1"}

#: What each extra port (or the on-disk store) needs, and nothing else does.
FRONT_ENDS = {
    "--amqp-port": ("pamqp", "minibroker.amqp"),
    "--kafka-port": ("kio", "minibroker.kafka"),
    "--http-port": ("starlette", "hypercorn", "minibroker.http"),
    "--sqs-port": ("hypercorn", "minibroker.sqs"),
    "--metrics-port": ("prometheus_client",),
}
#: Never needed by a memory-only server: the clients (the CLI's client
#: commands) and the disk store.
NOT_FOR_SERVE = ("minibroker.client", "minibroker.server.datadir", "minibroker.storage.commitlog")
#: Not needed before the first client of a server with no extra port (front
#: ends load some of them): crc32c (Kafka batches; importing it reads every
#: installed package's metadata through importlib.metadata), json (log group
#: offsets, queue journals) and dataclasses (the core's classes are value
#: classes, cheap to define: minibroker/value_class.py).
NOT_AT_START = ("crc32c", "importlib.metadata", "json", "dataclasses")


def imported(log: list[str]) -> set[str]:
    return {m["module"] for line in log if (m := IMPORT_LINE.match(line))}


def matching(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


async def serve_and_ping(*args: str) -> set[str]:
    """Every module ``minibroker serve ARGS`` imports up to its first ping."""
    async with serve("--port", "0", *args, env=IMPORTTIME) as served:
        async with minibroker.connect(served.url) as mb:
            await mb.ping()
        assert await stop(served) == 0
    return imported(served.log)


async def test_serve_with_no_extra_port_imports_no_other_front_end() -> None:
    loaded = await serve_and_ping()
    assert "minibroker.protocol.session" in loaded  # the import lines were read
    every_front_end = tuple(p for packages in FRONT_ENDS.values() for p in packages)
    assert matching(loaded, every_front_end + NOT_FOR_SERVE + NOT_AT_START) == []


async def test_each_extra_port_imports_its_front_end() -> None:
    """The other side of the test above: the names it looks for are the ones loaded."""
    ports = [arg for flag in FRONT_ENDS for arg in (flag, "0")]
    loaded = await serve_and_ping(*ports)
    for flag, packages in FRONT_ENDS.items():
        for package in packages:
            assert matching(loaded, (package,)), f"{flag} did not import {package}"
    assert matching(loaded, NOT_FOR_SERVE) == []


#: Imports what ``minibroker serve`` imports, with ``re.compile`` watched, and
#: prints the modules of minibroker that compiled a pattern while imported.
WATCH_COMPILES = """
import re, sys
import trio  # its own patterns are not ours to judge
compiled_by = set()
original = re.compile
def watching(pattern, flags=0):
    compiled_by.add(sys._getframe(1).f_globals.get("__name__", "?"))
    return original(pattern, flags)
re.compile = watching
import minibroker.cli.serve, minibroker.server.app
print(sorted(m for m in compiled_by if m.startswith("minibroker")))
"""


def test_importing_the_server_compiles_no_regular_expression() -> None:
    """Patterns are compiled on first use (minibroker/core/names.py): ``re``
    builds a 64K-entry map for each of the name rules' character classes."""
    found = subprocess.run(
        [sys.executable, "-c", WATCH_COMPILES], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"
