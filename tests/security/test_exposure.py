"""What the broker exposes: loopback by default, and no code run on anything a client sends.

The source check walks the syntax tree of every module of the package for
the ways Python runs code or a shell from data: ``eval``, ``exec``,
``compile``, ``pickle``/``marshal``/``shelve`` (which run code while
loading), ``subprocess``, ``os.system``/``os.popen``/``os.exec*``/``os.spawn*``,
``shell=True``, ``__import__`` and ``importlib``. Each allowed use is listed
below with the reason it never sees client data.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from security_support import StartServer

import minibroker
from minibroker.cli import build_parser
from minibroker.config import ServerConfig

PACKAGE = Path(minibroker.__file__).resolve().parent

#: (module path relative to the package, name) -> why it is safe.
ALLOWED = {
    ("protocol/schema.py", "exec"): (
        "compiles the decoder of a frame class from its annotations, once per class "
        "(on first use): the generated source holds field names and types from frames.py, "
        "never bytes from a client, and a client's op only picks one of the fixed classes"
    ),
    ("value_class.py", "exec"): (
        "compiles the __init__ of a value class from its field names, once per class "
        "(on first use): the source holds names declared in minibroker's own classes, "
        "never client bytes"
    ),
    ("__init__.py", "importlib"): (
        "lazy public names: imports a module named in the package's own constant table "
        "when an attribute of the package is first used; never a name from client data"
    ),
}

CALLS = {"eval", "exec", "compile", "__import__", "breakpoint"}
MODULES = {"pickle", "cPickle", "marshal", "shelve", "subprocess", "importlib", "dill", "yaml"}
OS_CALLS = {"system", "popen", "execv", "execve", "execl", "execlp", "execvp", "spawnl", "spawnv"}


def findings(package: Path = PACKAGE) -> list[tuple[str, str, int]]:
    """(module, what, line) for every use of a code-running call or module."""
    found: list[tuple[str, str, int]] = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            name: str | None = None
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in CALLS:
                    name = func.id
                elif (
                    isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "os"
                    and (func.attr in OS_CALLS or func.attr.startswith("spawn"))
                ):
                    name = f"os.{func.attr}"
                for keyword in node.keywords:
                    if keyword.arg == "shell":
                        found.append((relative, "shell=", node.lineno))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in MODULES:
                        name = alias.name
            elif (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.split(".")[0] in MODULES
            ):
                name = node.module
            if name is not None:
                found.append((relative, name, node.lineno))
    return found


def test_no_code_or_shell_is_run_from_data() -> None:
    unexpected = [f for f in findings() if (f[0], f[1]) not in ALLOWED]
    assert unexpected == [], "code execution outside the allow-list: " + repr(unexpected)


def test_the_allow_list_is_still_needed() -> None:
    """An allow-list entry whose use went away is removed, not left to cover a new one."""
    used = {(f[0], f[1]) for f in findings()}
    assert set(ALLOWED) <= used, set(ALLOWED) - used


def test_the_checker_catches_what_it_looks_for(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "import pickle\nfrom subprocess import run\nimport os\n"
        "os.system('x')\neval('1')\nrun('x', shell=True)\n"
    )
    names = sorted(name for _, name, _ in findings(tmp_path))
    assert names == ["eval", "os.system", "pickle", "shell=", "subprocess"]


def test_defaults_bind_loopback_only() -> None:
    assert ServerConfig().host == "127.0.0.1"
    assert ServerConfig().metrics_host == "127.0.0.1"
    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1"
    assert args.metrics_host == "127.0.0.1"


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port`` (from /proc/net/tcp{,6})."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(address)
    return found


async def test_a_default_server_listens_on_loopback_only(serve: StartServer) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp (Linux)")
    server = await serve()
    assert server.port is not None
    assert _listening_addresses(server.port) == {"0100007F"}  # 127.0.0.1, little-endian hex
