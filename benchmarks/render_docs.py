"""Render docs/benchmarks.md from a results.json.

    python -m benchmarks.render_docs benchmarks/results/<run>/results.json \\
        [--out docs/benchmarks.md] [--analysis notes.md]

The page shows the run's machine (CPU model, cores, memory, kernel, Python),
the exact command, the peer and client versions, the comparison with ratios,
the goals of issue 7 and every measurement. ``--analysis`` inserts a
hand-written Markdown file (profiles, where the time goes) so re-rendering
after a new run keeps it. Figures come only from the JSON: nothing is typed in.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.report import load_line, render_body
from benchmarks.results import RunResults

REPO_ROOT = Path(__file__).resolve().parent.parent

INTRO = """\
# Benchmarks

`benchmarks/` runs the same workloads against minibroker and, when they are
reachable on this machine, RabbitMQ, a Kafka-protocol broker and NATS, each
through its best-regarded Python client. Every producer, consumer, subscriber,
requester and responder runs in its own process; every body carries a sequence
number, and each receiver checks the set of numbers and a checksum, so a run
that lost or altered a message is reported as FAILED and never as a speed.

Rerun it with `make bench` (or `python -m benchmarks --help` for targets,
workloads, counts and body size); `python -m benchmarks --quick` is the smoke
run that `make test` uses. Each run writes `results.md`, `results.json` and PNG
plots to `benchmarks/results/<time>/`; this page is rendered from one such
`results.json` by `python -m benchmarks.render_docs`.
"""


def render(results: RunResults, analysis: str | None = None) -> str:
    mach = results.machine
    lines = [INTRO, "## Latest run", ""]
    lines += [
        "| Machine | |",
        "|---|---|",
        f"| CPU | {mach.get('cpu', '?')} |",
        f"| Cores | {mach.get('cores', '?')} |",
        f"| Memory | {mach.get('memory_gib', '?')} GiB |",
        f"| Kernel | {mach.get('os', '?')} |",
        f"| Python | {mach.get('python', '?')} |",
        f"| Run | {results.started} to {results.finished or '?'} |",
        "",
        f"Command: `{results.command}`",
        "",
        load_line(results),
        "",
    ]
    lines += render_body(results, heading="###")
    if analysis:
        lines += ["## Analysis", "", analysis.strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.render_docs", description=__doc__)
    parser.add_argument("results", type=Path, help="a results.json written by python -m benchmarks")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--analysis", type=Path, default=None, help="Markdown to include")
    args = parser.parse_args(argv)
    results = RunResults.load(args.results)
    analysis = args.analysis.read_text() if args.analysis else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, analysis))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
