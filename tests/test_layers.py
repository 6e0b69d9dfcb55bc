"""The layers hold at run time: what importing a layer actually loads.

`lint-imports` (run by `make test`) checks the import statements; these
tests check the result in a fresh interpreter, where nothing else has been
imported yet: the core loads no I/O, no msgpack and no store, and a program
that only uses the blocking client loads neither the broker's storage nor
its server nor its permission parser.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: Imports a package and every module in it, then prints what the interpreter holds.
LOADED = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(getattr(package, "__path__", []), package.__name__ + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after_importing(module: str) -> list[str]:
    """Every module a fresh interpreter loads for ``module`` (and, for a package, all of it)."""
    out = subprocess.run(
        [sys.executable, "-c", LOADED, module], check=True, capture_output=True, text=True
    ).stdout
    return list(json.loads(out))


def matching(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


def test_the_core_loads_no_trio_socket_msgpack_or_store() -> None:
    loaded = loaded_after_importing("minibroker.core")
    assert "minibroker.core.broker" in loaded  # every core module was imported
    assert "minibroker.core.logs" in loaded
    forbidden = (
        "trio",
        "socket",
        "msgpack",
        "minibroker.storage",
        "minibroker.record_format",
        "minibroker.protocol",
        "minibroker.server",
        "minibroker.config",
    )
    assert matching(loaded, forbidden) == []


def test_the_blocking_client_loads_no_storage_server_or_permissions() -> None:
    loaded = loaded_after_importing("minibroker.client.sync")
    assert "minibroker.client.logs" in loaded  # the log methods (and their decoder) came along
    forbidden = (
        "minibroker.storage",
        "minibroker.server",
        "minibroker.core",
        "minibroker.config",
        "minibroker.embedded",
        "minibroker.protocol.session",
        "minibroker.access",
        "minibroker.access.auth",
        "minibroker.access.permissions",
    )
    assert matching(loaded, forbidden) == []
