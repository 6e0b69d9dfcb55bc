"""The ``minibroker`` command: ``serve`` plus client subcommands per model.

Each model's subcommands live in their own module and register themselves
with ``add_commands(subparsers)``; this module only assembles them.
"""

from __future__ import annotations

import argparse
import os
import signal
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
        sys.stdout.flush()  # here, so a closed pipe is caught below
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_went_away()
    return result


def _reader_went_away() -> int:
    """stdout's reader closed the pipe (``| head``): stop quietly, as Unix tools do.

    Nothing is wrong with the broker, so no error message; the exit status
    is the one a process killed by SIGPIPE reports (128 + 13).
    """
    # Python would try to flush stdout again at exit and complain: point
    # the descriptor at /dev/null first.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
