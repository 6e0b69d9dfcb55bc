"""``minibroker publish``, ``subscribe``, ``bind`` and ``unbind``: topics from a shell.

    minibroker publish orders.created '{"id": 1}' '{"id": 2}'   # two messages
    seq 1000 | minibroker publish metrics.cpu                   # one message per line
    minibroker subscribe 'orders.*'                             # print until Ctrl-C
    minibroker subscribe 'jobs.#' --group workers --count 10    # share the stream, stop after 10
    minibroker bind audit 'orders.#'                            # copy into queue "audit"

``publish`` prints how far the messages reached (``subscriptions`` and
``queues`` are totals over the batch) and exits 0; errors exit 1 with
``error: <code>: <message>`` on stderr. ``subscribe`` prints one line per
message (``TOPIC BODY``, or JSON lines with ``--json``) and flushes after
every batch the broker sends, so it works in pipelines; a notice about
messages dropped because the reader fell behind goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from minibroker.cli.common import connection_options, int64, parse_headers, report, until_signalled
from minibroker.client.topics import DEFAULT_BUFFER, TopicMessage
from minibroker.client.trio_client import Client, connect
from minibroker.errors import BrokerError


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    publish = commands.add_parser(
        "publish",
        help="publish messages to a topic",
        description="Publish each BODY as one message to TOPIC; with no BODY, publish "
        "each line of standard input (without its newline) as one message.",
    )
    connection_options(publish)
    publish.add_argument("topic", help="the topic, e.g. orders.created (no wildcards)")
    publish.add_argument("body", nargs="*", help="message bodies (default: lines of stdin)")
    publish.add_argument(
        "--header",
        "-H",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a header for every message (repeatable)",
    )
    publish.add_argument(
        "--quiet", "-q", action="store_true", help="don't print how far the messages reached"
    )
    publish.set_defaults(run=_run_publish)

    subscribe = commands.add_parser(
        "subscribe",
        help="print messages published to topics matching a pattern",
        description="Subscribe to PATTERN ('*' matches one word, '#' zero or more) and "
        "print each message as it arrives, until Ctrl-C or --count messages.",
    )
    connection_options(subscribe)
    subscribe.add_argument("pattern", help="topic pattern, e.g. 'orders.*' or 'orders.#'")
    subscribe.add_argument(
        "--group", default=None, help="share the messages with other members of this group"
    )
    subscribe.add_argument(
        "--count", "-n", type=int64, default=None, help="exit after this many messages"
    )
    subscribe.add_argument(
        "--json",
        action="store_true",
        help="print JSON lines {topic, body, headers} instead of 'TOPIC BODY'",
    )
    subscribe.add_argument(
        "--buffer",
        type=int64,
        default=DEFAULT_BUFFER,
        help="messages the broker holds for us when we fall behind (default %(default)s)",
    )
    subscribe.add_argument(
        "--buffer-bytes",
        type=int64,
        default=None,
        help="bytes the broker holds for us when we fall behind (default: the broker's, 16 MiB)",
    )
    subscribe.add_argument(
        "--on-overflow",
        choices=["drop_oldest", "disconnect"],
        default="drop_oldest",
        help="what the broker does when that buffer is full (default %(default)s)",
    )
    subscribe.set_defaults(run=_run_subscribe)

    bind = commands.add_parser(
        "bind",
        help="copy messages of topics matching a pattern into a queue",
        description="Bind QUEUE to PATTERN: every message published to a matching topic "
        "is also put into QUEUE (which must exist), for consumers that are not connected.",
    )
    connection_options(bind)
    bind.add_argument("queue", help="the queue that receives copies")
    bind.add_argument("pattern", help="topic pattern, e.g. 'orders.#'")
    bind.set_defaults(run=_run_bind)

    unbind = commands.add_parser(
        "unbind",
        help="remove a queue binding",
        description="Remove the binding of QUEUE to PATTERN.",
    )
    connection_options(unbind)
    unbind.add_argument("queue")
    unbind.add_argument("pattern")
    unbind.set_defaults(run=_run_unbind)


# ----------------------------------------------------------------- running


def _with_client(args: argparse.Namespace, work: Callable[[Client], Awaitable[int]]) -> int:
    """Connect, run ``work``, and turn broker and connection errors into exit code 1."""

    async def main() -> int | BaseException:
        # Errors are returned, not raised, so they don't leave the client's
        # nursery wrapped in an ExceptionGroup.
        try:
            async with connect(
                args.url, namespace=args.namespace, client_name="minibroker-cli"
            ) as mb:
                try:
                    return await work(mb)
                except BrokerError as exc:
                    return exc
        except (BrokerError, OSError) as exc:
            return exc

    outcome = trio.run(main)
    if isinstance(outcome, BaseException):
        return report(outcome, args.url)
    return outcome


def _split_lines(data: bytes) -> list[bytes]:
    """Lines of ``data`` without their line ends (``\n`` or ``\r\n``)."""
    return [line[:-1] if line.endswith(b"\r") else line for line in data.split(b"\n")]


async def _read_stdin_lines(publish: Callable[[list[bytes]], Awaitable[None]]) -> None:
    """Publish stdin's lines as they come: each read's complete lines form one batch.

    ``read1`` returns whatever the pipe holds (up to 64 KiB) without waiting
    for more, so ``tail -f log | minibroker publish logs`` publishes each line
    promptly while ``seq 1000000 | ...`` still goes out in big batches.
    """
    stdin: Any = sys.stdin.buffer  # a BufferedReader, which has read1
    pending = bytearray()
    while True:
        chunk: bytes = await trio.to_thread.run_sync(stdin.read1, 65536)
        if not chunk:
            break
        pending += chunk
        end = pending.rfind(b"\n")
        if end >= 0:
            complete = bytes(pending[:end])
            del pending[: end + 1]
            await publish(_split_lines(complete))
    if pending:
        await publish(_split_lines(bytes(pending)))


def _run_publish(args: argparse.Namespace) -> int:
    headers = parse_headers(args.header)

    async def work(mb: Client) -> int:
        messages = subscriptions = queues = 0

        async def publish(bodies: list[bytes]) -> None:
            nonlocal messages, subscriptions, queues
            result = await mb.publish_many(args.topic, [(body, headers) for body in bodies])
            messages += len(bodies)
            subscriptions += result.subscriptions
            queues += result.queues

        if args.body:
            await publish([body.encode() for body in args.body])
        else:
            await _read_stdin_lines(publish)
        if not args.quiet:
            print(
                f"published {messages} message{'s' if messages != 1 else ''} to "
                f"{args.topic!r}: {subscriptions} subscription deliveries, "
                f"{queues} queue deliveries"
            )
        return 0

    return _with_client(args, work)


def _format_text(message: TopicMessage) -> str:
    return f"{message.topic} {message.body.decode('utf-8', errors='backslashreplace')}"


def _format_json(message: TopicMessage) -> str:
    return json.dumps(
        {
            "topic": message.topic,
            "body": message.body.decode("utf-8", errors="backslashreplace"),
            "headers": message.headers or {},
        },
        ensure_ascii=False,
    )


def _run_subscribe(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise SystemExit("error: --count must be at least 1")
    show = _format_json if args.json else _format_text
    out = sys.stdout

    async def receive(mb: Client) -> None:
        async with mb.subscribe(
            args.pattern,
            group=args.group,
            buffer=args.buffer,
            on_overflow=args.on_overflow,
            buffer_bytes=args.buffer_bytes,
        ) as sub:
            group = f" in group {args.group!r}" if args.group else ""
            print(f"subscribed to {args.pattern!r}{group}; Ctrl-C to stop", file=sys.stderr)
            printed = 0
            reported_drops = 0
            while args.count is None or printed < args.count:
                want = 10_000 if args.count is None else args.count - printed
                try:
                    batch = await sub.get_batch(want)
                except StopAsyncIteration:
                    return
                if sub.dropped != reported_drops:
                    lost = sub.dropped - reported_drops
                    reported_drops = sub.dropped
                    print(f"notice: the broker dropped {lost} messages", file=sys.stderr)
                out.write("".join(show(message) + "\n" for message in batch))
                out.flush()
                printed += len(batch)

    async def work(mb: Client) -> int:
        await until_signalled(receive(mb))
        return 0

    try:
        return _with_client(args, work)
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
        return 0



def _run_bind(args: argparse.Namespace) -> int:
    async def work(mb: Client) -> int:
        created = await mb.bind(args.queue, args.pattern)
        state = "bound" if created else "already bound"
        print(f"{args.queue!r} {state} to {args.pattern!r}")
        return 0

    return _with_client(args, work)


def _run_unbind(args: argparse.Namespace) -> int:
    async def work(mb: Client) -> int:
        removed = await mb.unbind(args.queue, args.pattern)
        state = "unbound from" if removed else "was not bound to"
        print(f"{args.queue!r} {state} {args.pattern!r}")
        return 0

    return _with_client(args, work)
