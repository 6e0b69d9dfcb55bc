"""``minibroker trace``: follow the x-ray from a terminal.

It talks to a server's HTTP face (``serve --http-port``): turns tracing on
for the names matching ``--topic`` (a topic pattern; queue, log and subject
names match it the same way), prints each trace as it is recorded, one step
per line with its timing and the ``path::symbol`` that did it, and turns
tracing off again when it stops (after ``--count`` traces, or Ctrl-C).

Standard library only (urllib): the CLI needs no HTTP client package.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any, TextIO

#: Seconds between two polls of the recorded traces.
POLL_SECONDS = 0.25


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trace = commands.add_parser(
        "trace",
        help="follow the x-ray: what the broker does with each matching request",
        description="Turn on the x-ray of a server's HTTP face for names matching a pattern "
        "and print every traced request's steps (see docs/internals.md, 'The x-ray').",
    )
    trace.add_argument(
        "--http",
        default=os.environ.get("MINIBROKER_HTTP_URL", "http://127.0.0.1:8080"),
        help="the server's HTTP face (serve --http-port; default %(default)s, "
        "or $MINIBROKER_HTTP_URL)",
    )
    trace.add_argument("--topic", default="#", help="names to trace, a topic pattern (default #)")
    trace.add_argument(
        "--sample-every", type=int, default=1, help="trace one request in N (default 1)"
    )
    trace.add_argument(
        "--count", type=int, default=None, help="stop after this many traces (default: never)"
    )
    trace.add_argument(
        "--token",
        default=os.environ.get("MINIBROKER_TOKEN"),
        help="bearer token (default $MINIBROKER_TOKEN)",
    )
    trace.set_defaults(run=_run_trace)


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(args.http.rstrip("/") + path, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    if args.token:
        request.add_header("authorization", f"Bearer {args.token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def print_trace(trace: dict[str, Any], out: TextIO) -> None:
    """One trace as lines: a heading, then one line per step."""
    where = f" in {trace['namespace']!r}" if trace["namespace"] else ""
    out.write(
        f"#{trace['id']} {trace['op']} {trace['name']}{where} (connection {trace['connection']})\n"
    )
    for step in trace["steps"]:
        detail = json.dumps(step["detail"], separators=(",", ":"))
        out.write(
            f"  {step['at_us']:>9.1f} µs  +{step['took_us']:<8.1f} {step['step']:<12} "
            f"{step['source']}  {detail}\n"
        )
    out.flush()


def _run_trace(args: argparse.Namespace) -> int:
    try:
        _call(args, "PUT", "/v1/xray", {"pattern": args.topic, "sample_every": args.sample_every})
    except urllib.error.HTTPError as exc:
        print(f"minibroker trace: {exc.code} {exc.read().decode()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"minibroker trace: cannot reach {args.http}: {exc}", file=sys.stderr)
        return 1
    print(f"tracing {args.topic!r} on {args.http} (Ctrl-C to stop)", file=sys.stderr)
    seen = 0
    after = 0
    try:
        while args.count is None or seen < args.count:
            state = _call(args, "GET", f"/v1/xray?after={after}")
            if not state["enabled"]:
                print("minibroker trace: tracing was turned off", file=sys.stderr)
                return 1
            for trace in state["traces"]:
                if trace["waiting_for_fsync"] or seen == args.count:
                    break  # a durable write is printed once its fsync batch is in
                print_trace(trace, sys.stdout)
                after = trace["id"]
                seen += 1
            if seen != args.count:
                time.sleep(POLL_SECONDS)
    finally:
        with contextlib.suppress(OSError):
            _call(args, "DELETE", "/v1/xray")
    return 0
