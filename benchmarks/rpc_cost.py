"""What one sequential request/reply costs each process: CPU, wake-ups, system calls.

    .venv/bin/python -m benchmarks.rpc_cost                       # every row, 2,000 requests
    .venv/bin/python -m benchmarks.rpc_cost --rows sync/sync --strace

Wall-clock latency on a shared 2-core machine swings with the load; what
each process does per request does not. For each row (requester client /
responder, as in ``benchmarks/rpc_latency.py``) this starts a broker and a
responder, lets a requester warm up, then counts over ``--count``
sequential requests, per request and per process:

* ``cpu_us``: user + system CPU time (``/proc/<pid>/task/*/stat``; the
  requester's own ``getrusage``);
* ``wakeups``: voluntary context switches, i.e. how often a thread of the
  process went to sleep waiting for something (each is a later wake-up);
* with ``--concurrency N``, N threads (Trio tasks) share the requests and
  the requester's client: the counts are then per request of that mix;
* ``syscalls`` (with ``--strace``): system calls, from ``strace -c -f``
  attached for the counted phase only (strace slows every call, so
  latencies of that run are not reported);
* ``instructions`` (with ``--callgrind WHO``, WHO one of ``broker``,
  ``responder``, ``requester``): the CPU instructions that process executes
  per request, counted by valgrind's callgrind with instrumentation switched
  on (``callgrind_control -i on``) for the counted phase only. Exact and
  independent of the load, unlike every time above; the process runs some
  50 times slower under valgrind, so the other figures of that run mean
  nothing (use ``--count 500`` or so).

The p50 is also printed, with the 1-minute load average: read it as a
hint, compare the counts. Every reply is checked to be its request's echo.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.rpc_latency import SUBJECT, _child, _free_port, _process, _wait_ready

ROWS = ("trio/trio", "trio/serve", "sync/sync", "trio/sync", "sync/trio")
TICK = os.sysconf("SC_CLK_TCK")


def _proc_counts(pid: int) -> tuple[float, int]:
    """(CPU seconds, voluntary context switches) of every thread of ``pid``."""
    cpu = 0.0
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICK
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    switches += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return cpu, switches


def _request(kind: str, url: str, count: int, warmup: int, size: int, concurrency: int) -> None:
    """The requester child: warm up, say ready, wait for go, count, print JSON.
    ``concurrency`` > 1: that many threads (Trio tasks) share the count and the client."""
    body = os.urandom(size)
    latencies: list[float] = []

    def measured(call: Any) -> Any:
        print("ready", flush=True)
        sys.stdin.readline()
        before = resource.getrusage(resource.RUSAGE_SELF)

        def run(numbers: range) -> None:
            for i in numbers:
                mine = i.to_bytes(8, "big") + body[8:]
                t0 = time.perf_counter()
                reply = call(mine)
                latencies.append(time.perf_counter() - t0)
                if reply != mine:
                    raise AssertionError("reply does not match its request")

        with ThreadPoolExecutor(concurrency) as pool:
            runs = [pool.submit(run, range(t, count, concurrency)) for t in range(concurrency)]
            for done in runs:
                done.result()
        return before, resource.getrusage(resource.RUSAGE_SELF)

    if kind == "sync":
        import minibroker

        with minibroker.connect_sync(url) as mb:
            for _ in range(warmup):
                mb.request(SUBJECT, body)
            before, after = measured(lambda b: mb.request(SUBJECT, b).body)
    else:
        import trio

        import minibroker

        async def main() -> tuple[Any, Any]:
            async with minibroker.connect(url) as mb:
                for _ in range(warmup):
                    await mb.request(SUBJECT, body)
                print("ready", flush=True)
                await trio.to_thread.run_sync(sys.stdin.readline)
                before = resource.getrusage(resource.RUSAGE_SELF)

                async def run(numbers: range) -> None:
                    for i in numbers:
                        mine = i.to_bytes(8, "big") + body[8:]
                        t0 = time.perf_counter()
                        reply = await mb.request(SUBJECT, mine)
                        latencies.append(time.perf_counter() - t0)
                        if reply.body != mine:
                            raise AssertionError("reply does not match its request")

                async with trio.open_nursery() as nursery:
                    for task in range(concurrency):
                        nursery.start_soon(run, range(task, count, concurrency))
                return before, resource.getrusage(resource.RUSAGE_SELF)

        before, after = trio.run(main)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(
        json.dumps(
            {
                "cpu": cpu,
                "switches": after.ru_nvcsw - before.ru_nvcsw,
                "p50_us": statistics.median(latencies) * 1e6,
            }
        ),
        flush=True,
    )


def _strace(pid: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["strace", "-c", "-f", "-q", "-o", str(out), "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _syscalls(out: Path) -> dict[str, int]:
    """Calls per system call from an ``strace -c`` summary."""
    counts: dict[str, int] = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            counts[parts[-1]] = int(parts[3])
    return counts


def _callgrind(argv: list[str], who: str, args: argparse.Namespace, tmp: str) -> list[str]:
    """``argv``, run under callgrind with instrumentation off when ``who`` is ``--callgrind``."""
    if args.callgrind != who:
        return argv
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "-q",
        f"--callgrind-out-file={tmp}/callgrind.out",
        *argv,
    ]


def _instructions(pid: int, tmp: str) -> int:
    """Dump the counts of a process under callgrind; the instructions counted so far."""
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    total = 0
    for dump in Path(tmp).glob("callgrind.out*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
                break
    return total


def _row(name: str, args: argparse.Namespace) -> dict[str, Any]:
    requester, responder = name.split("/")
    port = _free_port()
    url = f"minibroker://127.0.0.1:{port}"
    serve = [sys.executable, "-m", "minibroker", "serve", "--port", str(port)]
    if args.callgrind_out:
        out = Path(args.callgrind_out) / name.replace("/", "-")
        out.mkdir(parents=True, exist_ok=True)
        return _measure(name, requester, responder, url, serve, port, args, str(out))
    with tempfile.TemporaryDirectory() as tmp:
        return _measure(name, requester, responder, url, serve, port, args, tmp)


def _measure(
    name: str,
    requester: str,
    responder: str,
    url: str,
    serve: list[str],
    port: int,
    args: argparse.Namespace,
    tmp: str,
) -> dict[str, Any]:
    with (
        _process(_callgrind(serve, "broker", args, tmp), ready_port=port, timeout=120) as broker,
        _process(_callgrind(_child("responder", responder, url), "responder", args, tmp)) as child,
    ):
        _wait_ready(child)
        req = subprocess.Popen(
            _callgrind(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.rpc_cost",
                    "requester",
                    requester,
                    url,
                    str(args.count),
                    str(args.warmup),
                    str(args.size),
                    str(args.concurrency),
                ],
                "requester",
                args,
                tmp,
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert req.stdin is not None and req.stdout is not None
        _wait_ready(req)
        pids = {"broker": broker.pid, "responder": child.pid, "requester": req.pid}
        tracers = {}
        if args.strace:
            tracers = {who: _strace(pid, Path(tmp) / who) for who, pid in pids.items()}
            time.sleep(1.0)  # attached before the counted phase starts
        if args.callgrind:
            subprocess.run(
                ["callgrind_control", "-i", "on", str(pids[args.callgrind])],
                check=True,
                capture_output=True,
            )
        before = {who: _proc_counts(pids[who]) for who in ("broker", "responder")}
        load = os.getloadavg()[0]
        req.stdin.write(b"go\n")
        req.stdin.flush()
        result = json.loads(req.stdout.readline())
        after = {who: _proc_counts(pids[who]) for who in ("broker", "responder")}
        instructions = _instructions(pids[args.callgrind], tmp) if args.callgrind else 0
        for tracer in tracers.values():
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
        req.wait(60)
        n = args.count
        row: dict[str, Any] = {"p50_us": result["p50_us"], "load": load}
        if args.callgrind:
            row["instructions"] = {args.callgrind: instructions / n}
        for who in ("broker", "responder"):
            row[who] = {
                "cpu_us": (after[who][0] - before[who][0]) / n * 1e6,
                "wakeups": (after[who][1] - before[who][1]) / n,
            }
        row["requester"] = {"cpu_us": result["cpu"] / n * 1e6, "wakeups": result["switches"] / n}
        for who in tracers:
            calls = _syscalls(Path(tmp) / who)
            row[who]["syscalls"] = sum(calls.values()) / n
            row[who]["by_call"] = {k: round(v / n, 2) for k, v in calls.items() if v >= n / 10}
    return row


def _print(rows: dict[str, dict[str, Any]]) -> None:
    for name, row in rows.items():
        if "instructions" in row:
            for who, count in row["instructions"].items():
                print(f"{name}: {who} {count:,.0f} instructions per request (callgrind)")
            continue
        print(f"{name}: p50 {row['p50_us']:.0f} µs (load {row['load']:.1f})")
        for who in ("requester", "broker", "responder"):
            part = row[who]
            line = f"  {who:<10} cpu {part['cpu_us']:6.0f} µs  wake-ups {part['wakeups']:5.2f}"
            if "syscalls" in part:
                line += f"  syscalls {part['syscalls']:5.2f}  {part['by_call']}"
            print(line)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "requester":
        kind, url, count, warmup, size, concurrency = argv[1], argv[2], *map(int, argv[3:7])
        _request(kind, url, count, warmup, size, concurrency)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated, e.g. sync/sync")
    parser.add_argument("--count", type=int, default=2000, help="counted sequential requests")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--size", type=int, default=100, help="body bytes")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests in flight (threads or Trio tasks)"
    )
    parser.add_argument("--strace", action="store_true", help="count system calls (strace -c)")
    parser.add_argument(
        "--callgrind",
        choices=["broker", "responder", "requester"],
        default=None,
        help="count that process's instructions per request under valgrind's callgrind",
    )
    parser.add_argument(
        "--callgrind-out",
        default=None,
        help="keep callgrind's dumps in this directory (for callgrind_annotate)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    rows = {name: _row(name, args) for name in args.rows.split(",")}
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print(rows)


if __name__ == "__main__":
    main()
