"""What every client subcommand shares: where to connect, reading headers,
and reporting errors in one line.

A URL is a secret when it carries a token (``minibroker://TOKEN@host``), so
it is shown only through ``redact_url``: in ``--help``, in error messages
and in banners.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from minibroker.client.url import parse_url, redact_url
from minibroker.errors import BrokerError

DEFAULT_URL = "minibroker://127.0.0.1:7878"


def broker_url(value: str) -> str:
    """argparse type for ``--url``: a bad URL is a one-line usage error, not a traceback."""
    try:
        parse_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


#: The integers the wire carries (msgpack's signed 64-bit range, as the broker reads them).
WIRE_INT_MIN = -(2**63)
WIRE_INT_MAX = 2**63 - 1


def int64(value: str) -> int:
    """argparse type for integer options: a number the wire cannot carry
    (``--max-length 99999999999999999999999``) is a one-line usage error, not a
    traceback from the msgpack encoder."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {value!r}") from None
    if not WIRE_INT_MIN <= number <= WIRE_INT_MAX:
        raise argparse.ArgumentTypeError(f"{value} is out of range (at most {WIRE_INT_MAX})")
    return number


def connection_options(parser: argparse.ArgumentParser) -> None:
    """``--url`` (default from MINIBROKER_URL) and ``--namespace``."""
    default = os.environ.get("MINIBROKER_URL", DEFAULT_URL)
    parser.add_argument(
        "--url",
        type=broker_url,
        default=default,
        help=f"broker URL (default: $MINIBROKER_URL or {redact_url(default)})".replace("%", "%%"),
    )
    parser.add_argument("--namespace", default=None, help="namespace to use")


def report(error: BaseException, url: str) -> int:
    """Print ``error`` in one line on stderr and return the exit status 1.

    A ``BrokenPipeError`` is not the broker's fault (stdout's reader went
    away): it is raised again, for ``minibroker.cli.main`` to end quietly.
    """
    if isinstance(error, BrokenPipeError):
        raise error
    if isinstance(error, BrokerError):
        print(f"error: {error.code}: {error.message}", file=sys.stderr)
    else:
        print(f"error: cannot reach the broker at {redact_url(url)}: {error}", file=sys.stderr)
    return 1


def guarded(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a blocking command; broker and connection errors become exit status 1."""
    try:
        return run(args)
    except (BrokerError, OSError) as exc:
        return report(exc, args.url)


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
