"""What every client subcommand shares: where to connect, and reading headers."""

from __future__ import annotations

import argparse
import os

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
