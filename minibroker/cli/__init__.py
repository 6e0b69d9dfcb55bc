"""The ``minibroker`` command: ``serve`` plus client subcommands per model.

Each model's subcommands live in their own module and register themselves
with ``add_commands(subparsers)``; this module only assembles them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from minibroker._version import __version__
from minibroker.cli import serve


def build_parser(*, client_commands: bool = True) -> argparse.ArgumentParser:
    """The whole command line; without the client commands for ``serve``, whose
    start-up should not pay for importing every client."""
    parser = argparse.ArgumentParser(
        prog="minibroker",
        description="A small, fast message broker: queues, topics, logs and request/reply.",
    )
    parser.add_argument("--version", action="version", version=f"minibroker {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.add_commands(commands)
    if client_commands:
        from minibroker.cli.client_commands import MODULES

        for module in MODULES:
            module.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(client_commands=arguments[:1] != ["serve"])
    args = parser.parse_args(arguments)
    try:
        result: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
