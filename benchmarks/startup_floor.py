"""W5 against its floor: ``minibroker serve`` start-up next to ``python -c "import trio"``.

The goal (issue 19) is a server ready within 30 ms of a bare Trio import on
the same machine, with and without a bytecode cache. Wall-clock figures on a
shared machine drift with the load, so every variant is launched in turn,
round-robin, and each reports the median of its launches:

- ``import trio``: launch to exit of ``python -c "import trio"``, the floor;
- ``serve``: launch of ``python -m minibroker serve --port P`` to the first
  successful ping (connection, hello, one request), as W5 measures it;
- ``embedded``: launch to exit of a script that imports minibroker, opens
  ``open_broker()`` and pings it once.

Each source tree given (``--tree NAME=PATH``, PATH holding a ``minibroker``
package; default: this checkout) is copied twice: once compiled to bytecode
(``cached``) and once never compiled, run with PYTHONDONTWRITEBYTECODE
(``no cache``) as an editable install in a read-only or bytecode-less
environment pays it. The standard library and Trio keep their own caches
either way. Run ``python -m benchmarks.startup_floor --tree before=/tmp/old``
to compare a change with the tree before it in one run.

``--callgrind`` runs each variant once under ``valgrind --tool=callgrind``
instead and prints the instructions it executed, from launch to exit (a
server is stopped with SIGTERM after its first ping): a count that does not
depend on the machine's load, unlike the times.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks.config import HOST
from benchmarks.targets.base import free_port, stop_process

REPO_ROOT = Path(__file__).resolve().parent.parent

EMBEDDED_SCRIPT = """
import trio
import minibroker

async def main():
    async with minibroker.open_broker() as broker, broker.connect() as mb:
        await mb.ping()

trio.run(main)
"""


@dataclass
class Variant:
    """One way of starting; ``launch`` returns milliseconds from launch to ready,
    wall clock and the process's CPU time (steadier than the wall clock on a
    loaded machine)."""

    name: str
    launch: Callable[[], tuple[float, float]]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def _env(tree: Path | None, cache: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    if not cache:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def time_to_exit(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - t0) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited with {proc.returncode}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def cpu_ms(pid: int) -> float:
    """User plus system CPU time a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def time_to_first_ping(
    tree: Path,
    env: dict[str, str],
    timeout: float = 30.0,
    prefix: tuple[str, ...] = (),
    stop_timeout: float = 10.0,
) -> tuple[float, float]:
    """Launch ``prefix + serve`` and ping it; milliseconds to the first answer, and CPU."""
    import minibroker

    port = free_port()
    cmd = [*prefix, sys.executable, "-m", "minibroker", "serve", "--port", str(port)]
    cmd += ["--host", HOST, "--log-level", "warning"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=tree, stdout=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                with minibroker.connect_sync(f"minibroker://{HOST}:{port}") as mb:
                    mb.ping()
                return (time.perf_counter() - t0) * 1000, cpu_ms(proc.pid)
            except OSError:
                if time.perf_counter() - t0 > timeout:
                    raise
                time.sleep(0.001)
    finally:
        stop_process(proc, timeout=stop_timeout)


def callgrind_instructions(name: str, tree: Path | None, env: dict[str, str], workdir: Path) -> int:
    """Instructions variant ``name`` executes under callgrind, launch to exit."""
    out = workdir / f"callgrind.{len(list(workdir.glob('callgrind.*')))}"
    prefix = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--quiet")
    if name.startswith("serve"):
        assert tree is not None
        # Under valgrind the server runs some fifty times slower.
        time_to_first_ping(tree, env, timeout=600, prefix=prefix, stop_timeout=600)
    else:
        script = "import trio" if tree is None else EMBEDDED_SCRIPT
        subprocess.run([*prefix, sys.executable, "-c", script], env=env, cwd=tree, check=True)
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction count in {out}")


def callgrind_main(trees: dict[str, Path], workdir: Path) -> None:
    floor = callgrind_instructions("import trio", None, _env(None, cache=True), workdir)
    print(f"load average {os.getloadavg()[0]:.1f}; instructions, launch to exit, in millions")
    print(f"{'variant':<30} {'Ir':>7} {'- floor':>8}")
    print(f"{'import trio':<30} {floor / 1e6:7.0f} {0:+8.0f}")
    for name, source in trees.items():
        for cache in (True, False):
            label = f"{name}, {'cached' if cache else 'no cache'}"
            tree = copy_tree(source, workdir / name / str(cache), compiled=cache)
            for kind in ("serve", "embedded"):
                count = callgrind_instructions(kind, tree, _env(tree, cache), workdir)
                print(f"{kind + ' ' + label:<30} {count / 1e6:7.0f} {(count - floor) / 1e6:+8.0f}")


def copy_tree(source: Path, target: Path, compiled: bool) -> Path:
    """A copy of ``source/minibroker`` under ``target``, compiled or without any bytecode."""
    shutil.copytree(
        source / "minibroker", target / "minibroker", ignore=shutil.ignore_patterns("__pycache__")
    )
    if compiled:
        compileall.compile_dir(target / "minibroker", quiet=1)
    return target


def variants(trees: dict[str, Path], workdir: Path) -> list[Variant]:
    python = sys.executable
    floor = _env(None, cache=True)
    found = [
        Variant("import trio", partial(time_to_exit, [python, "-c", "import trio"], floor, workdir))
    ]
    for name, source in trees.items():
        for cache in (True, False):
            label = f"{name}, {'cached' if cache else 'no cache'}"
            tree = copy_tree(source, workdir / name / str(cache), compiled=cache)
            env = _env(tree, cache)
            embedded = [python, "-c", EMBEDDED_SCRIPT]
            found.append(Variant(f"serve {label}", partial(time_to_first_ping, tree, env)))
            found.append(Variant(f"embedded {label}", partial(time_to_exit, embedded, env, tree)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="launches per variant")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions under valgrind's callgrind, one launch per variant",
    )
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a source tree to measure (repeatable; default: this checkout as 'this')",
    )
    args = parser.parse_args(argv)
    trees = {"this": REPO_ROOT} if not args.tree else {}
    for spec in args.tree:
        name, _, path = spec.partition("=")
        trees[name] = Path(path).resolve()
    if args.callgrind:
        with tempfile.TemporaryDirectory(prefix="startup-callgrind-") as tmp:
            callgrind_main(trees, Path(tmp))
        return 0
    with tempfile.TemporaryDirectory(prefix="startup-floor-") as tmp:
        found = variants(trees, Path(tmp))
        load_before = os.getloadavg()
        for _ in range(args.runs):
            for variant in found:
                wall, cpu = variant.launch()
                variant.wall.append(wall)
                variant.cpu.append(cpu)
        load_after = os.getloadavg()
    wall_floor = statistics.median(found[0].wall)
    cpu_floor = statistics.median(found[0].cpu)
    print(
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
        f"{args.runs} launches each, {os.cpu_count()} CPUs; medians in ms"
    )
    print(f"{'variant':<30} {'wall':>7} {'- floor':>8} {'CPU':>7} {'- floor':>8}")
    for variant in found:
        wall = statistics.median(variant.wall)
        cpu = statistics.median(variant.cpu)
        print(
            f"{variant.name:<30} {wall:7.0f} {wall - wall_floor:+8.0f}"
            f" {cpu:7.0f} {cpu - cpu_floor:+8.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
