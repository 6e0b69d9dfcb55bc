"""``minibroker request`` and ``minibroker respond``: request/reply from a shell.

    minibroker request svc.echo 'hello' --timeout 2      # prints the reply body
    minibroker respond svc.echo --echo                   # echo responder until Ctrl-C
    minibroker respond svc.time --reply 'pong' --group a

``request`` exits 0 with the reply body on stdout (reply headers go to
stderr as ``name: value`` lines), or 1 with ``error: <code>: <message>`` on
stderr (no_responders, timeout, responder_error ...).
"""

from __future__ import annotations

import argparse
import sys

import trio

from minibroker.cli.common import connection_options, parse_headers, report, until_signalled
from minibroker.client.rpc import DEFAULT_TIMEOUT, IncomingRequest, Reply
from minibroker.client.trio_client import connect
from minibroker.client.url import redact_url
from minibroker.errors import BrokerError


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    request = commands.add_parser(
        "request",
        help="send a request and print the reply",
        description="Send one request to a responder of SUBJECT and print its reply body.",
    )
    connection_options(request)
    request.add_argument("subject", help="the subject, e.g. svc.echo")
    request.add_argument("body", nargs="?", default=None, help="request body (default: empty)")
    request.add_argument(
        "--stdin", action="store_true", help="read the request body from standard input"
    )
    request.add_argument(
        "--header",
        "-H",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a request header (repeatable)",
    )
    request.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for the reply (default %(default)s)",
    )
    request.add_argument(
        "--raw",
        action="store_true",
        help="print the reply body exactly, without the newline added after it otherwise",
    )
    request.set_defaults(run=_run_request)

    respond = commands.add_parser(
        "respond",
        help="run a responder (echo by default) until Ctrl-C",
        description="Answer requests to SUBJECT until interrupted: echo each request's "
        "body and headers back (--echo, the default) or answer with a fixed body (--reply).",
    )
    connection_options(respond)
    respond.add_argument("subject", help="the subject to serve, e.g. svc.echo")
    mode = respond.add_mutually_exclusive_group()
    mode.add_argument("--echo", action="store_true", help="reply with the request (default)")
    mode.add_argument("--reply", default=None, metavar="BODY", help="reply with this body")
    respond.add_argument("--group", default=None, help="responder group (a pool sharing a turn)")
    respond.add_argument(
        "--quiet", "-q", action="store_true", help="don't log each request to stderr"
    )
    respond.set_defaults(run=_run_respond)


def _write_body(body: bytes, raw: bool) -> None:
    """The reply body on stdout, ending with a newline (like every other
    command's output) unless ``--raw`` asks for the exact bytes."""
    out = sys.stdout.buffer
    out.write(body)
    if not raw and not body.endswith(b"\n"):
        out.write(b"\n")
    out.flush()


def _run_request(args: argparse.Namespace) -> int:
    if args.stdin:
        body = sys.stdin.buffer.read()
    else:
        body = args.body.encode() if args.body is not None else b""
    headers = parse_headers(args.header)

    async def main() -> Reply | BrokerError | OSError:
        # Errors are returned, not raised, so they don't leave the client's
        # nursery wrapped in an ExceptionGroup.
        try:
            async with connect(
                args.url, namespace=args.namespace, client_name="minibroker-cli"
            ) as mb:
                try:
                    return await mb.request(
                        args.subject, body, headers=headers, timeout=args.timeout
                    )
                except BrokerError as exc:
                    return exc
        except (BrokerError, OSError) as exc:
            return exc

    reply = trio.run(main)
    if isinstance(reply, BaseException):
        return report(reply, args.url)
    for name, value in (reply.headers or {}).items():
        print(f"{name}: {value}", file=sys.stderr)
    _write_body(reply.body, args.raw)
    return 0


def _run_respond(args: argparse.Namespace) -> int:
    fixed = args.reply.encode() if args.reply is not None else None

    async def handler(req: IncomingRequest) -> Reply:
        if not args.quiet:
            print(f"[{req.rid}] {req.subject}: {_preview(req.body)}", file=sys.stderr, flush=True)
        if fixed is not None:
            return Reply(fixed)
        return Reply(req.body, req.headers)

    async def main() -> BrokerError | OSError | None:
        try:
            async with connect(
                args.url, namespace=args.namespace, client_name="minibroker-cli"
            ) as mb:
                mode = "echo" if fixed is None else "fixed reply"
                group = f" (group {args.group})" if args.group else ""
                banner = (
                    f"responding to {args.subject!r}{group} at {redact_url(args.url)} ({mode}); "
                    "Ctrl-C to stop"
                )
                try:
                    # The banner is printed once the broker has registered the
                    # responder (serve's task_status): a request sent on seeing
                    # it must not meet no_responders.
                    serving = mb.serve(
                        args.subject, handler, group=args.group, task_status=_Announce(banner)
                    )
                    await until_signalled(serving, farewell="stopping")
                except BrokerError as exc:
                    return exc
        except (BrokerError, OSError) as exc:
            return exc
        return None

    error = trio.run(main)
    return 0 if error is None else report(error, args.url)


class _Announce:
    """A ``task_status`` for ``Client.serve`` that prints a line once serving."""

    def __init__(self, line: str) -> None:
        self._line = line

    def started(self, value: object = None) -> None:
        print(self._line, file=sys.stderr, flush=True)


def _preview(body: bytes, limit: int = 80) -> str:
    text = body[:limit].decode("utf-8", errors="replace")
    return repr(text) + ("..." if len(body) > limit else "")
