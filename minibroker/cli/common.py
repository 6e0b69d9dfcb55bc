"""What every client subcommand shares: where to connect, and reading headers."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Awaitable

DEFAULT_URL = "minibroker://127.0.0.1:7878"


def connection_options(parser: argparse.ArgumentParser) -> None:
    """``--url`` (default from MINIBROKER_URL) and ``--namespace``."""
    parser.add_argument(
        "--url",
        default=os.environ.get("MINIBROKER_URL", DEFAULT_URL),
        help="broker URL (default: $MINIBROKER_URL or %(default)s)",
    )
    parser.add_argument("--namespace", default=None, help="namespace to use")


def parse_headers(pairs: list[str]) -> dict[str, str] | None:
    """``-H NAME=VALUE`` arguments as a headers map (None when there are none)."""
    headers: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"error: --header expects NAME=VALUE, got {pair!r}")
        headers[name] = value
    return headers or None


def text(data: bytes) -> str:
    """A body for the terminal: UTF-8, with undecodable bytes escaped."""
    return data.decode("utf-8", "backslashreplace")


async def until_signalled(work: Awaitable[None], *, farewell: str | None = None) -> None:
    """Run ``work`` until it returns or SIGINT/SIGTERM arrives, then stop cleanly.

    A ``BrokerError`` from ``work`` is re-raised as itself (not wrapped in
    the nursery's exception group), so commands can report it in one line.
    ``farewell`` is printed on stderr when a signal stops the work.
    """
    import trio

    from minibroker.errors import BrokerError

    failure: BrokerError | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                nonlocal failure
                try:
                    await work
                except BrokerError as exc:  # re-raised below, outside the nursery
                    failure = exc
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)
            async for _ in signals:
                if farewell is not None:
                    print(farewell, file=sys.stderr, flush=True)
                nursery.cancel_scope.cancel()
                break
    if failure is not None:
        raise failure
