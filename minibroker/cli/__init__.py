"""The ``minibroker`` command: ``serve`` plus client subcommands per model.

Each model's subcommands live in their own module and register themselves
with ``add_commands(subparsers)``; this module only assembles them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from minibroker import __version__
from minibroker.cli import client_commands, serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minibroker",
        description="A small, fast message broker: queues, topics, logs and request/reply.",
    )
    parser.add_argument("--version", action="version", version=f"minibroker {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.add_commands(commands)
    for module in client_commands.MODULES:
        module.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
