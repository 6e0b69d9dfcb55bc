"""``minibroker queue ...``, ``put`` and ``fetch``: work queues from a shell.

    minibroker queue declare jobs --visibility-timeout 60 --max-deliveries 5 \\
        --dead-letter-queue jobs.dead --durable
    minibroker put jobs 'first' 'second'                   # one batch, one confirm
    seq 1000 | minibroker put jobs                          # one message per stdin line
    minibroker fetch jobs --max 10 --wait 5                 # print and ack up to 10
    minibroker fetch jobs --no-ack                          # print; they come back on exit
    minibroker queue stats jobs
    minibroker queue list
    minibroker queue purge jobs
    minibroker queue delete jobs

``fetch`` prints one line per delivery, ``DELIVERY_ID<TAB>DELIVERY_COUNT<TAB>BODY``
(bodies decoded as UTF-8, undecodable bytes escaped), or JSON lines with
``--json``, and then acks what it printed (``--no-ack`` leaves them unacked:
the broker requeues them as soon as the command's connection closes;
``--reject`` nacks them to the dead-letter queue). Errors print ``error:
<code>: <message>`` on stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from minibroker.cli.common import connection_options, guarded, int64, parse_headers, text
from minibroker.client.queues import DEFAULT_VISIBILITY_TIMEOUT, SyncDelivery
from minibroker.client.sync import Client, connect_sync

#: Messages per put frame when reading stdin.
STDIN_BATCH = 1000


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "queue",
        help="declare, inspect, purge and delete work queues",
        description="Work with queues: pull consumers, at-least-once delivery.",
    )
    sub = parser.add_subparsers(dest="queue_command", metavar="ACTION", required=True)

    declare = _command(sub, "declare", "declare a queue (no-op if it exists alike)", _run_declare)
    declare.add_argument("name")
    declare.add_argument(
        "--max-length", type=int64, default=None, help="most ready messages the queue holds"
    )
    declare.add_argument(
        "--max-length-bytes",
        type=int64,
        default=None,
        help="most body bytes of ready messages the queue holds",
    )
    declare.add_argument(
        "--overflow",
        choices=["reject_publish", "drop_head"],
        default="reject_publish",
        help="what a put does at --max-length or --max-length-bytes (default %(default)s)",
    )
    declare.add_argument(
        "--message-ttl", type=float, default=None, help="seconds a message may live"
    )
    declare.add_argument(
        "--visibility-timeout",
        type=float,
        default=DEFAULT_VISIBILITY_TIMEOUT,
        help="seconds a fetched message stays in flight (default %(default)s)",
    )
    declare.add_argument(
        "--max-deliveries", type=int64, default=None, help="dead-letter after this many deliveries"
    )
    declare.add_argument(
        "--dead-letter-queue", default=None, help="queue for expired and rejected messages"
    )
    declare.add_argument(
        "--durable", action="store_true", help="journal to disk (broker with --data-dir)"
    )

    for name, help_text, run in (
        ("delete", "delete a queue and its messages", _run_delete),
        ("purge", "remove the ready and delayed messages", _run_purge),
    ):
        command = _command(sub, name, help_text, run)
        command.add_argument("name")

    stats = _command(sub, "stats", "depth, counters and options of a queue", _run_stats)
    stats.add_argument("name")
    stats.add_argument("--json", action="store_true", help="print one JSON object")

    listing = _command(sub, "list", "list the queues with their depth", _run_list)
    listing.add_argument("--json", action="store_true", help="print JSON lines")

    put = _command(
        commands,
        "put",
        "put messages into a queue (arguments, or one per stdin line)",
        _run_put,
    )
    put.add_argument("queue")
    put.add_argument("bodies", nargs="*", metavar="BODY", help="message bodies (default: stdin)")
    put.add_argument(
        "--header",
        "-H",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a header of every message (repeatable)",
    )
    put.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")

    fetch = _command(
        commands, "fetch", "fetch messages from a queue, print and ack them", _run_fetch
    )
    fetch.add_argument("queue")
    fetch.add_argument("--max", type=int64, default=1, help="most messages (default %(default)s)")
    fetch.add_argument(
        "--wait", type=float, default=0.0, help="seconds to wait for messages if none are ready"
    )
    fetch.add_argument(
        "--visibility-timeout", type=float, default=None, help="override the queue's"
    )
    settle = fetch.add_mutually_exclusive_group()
    settle.add_argument(
        "--ack",
        dest="settle",
        action="store_const",
        const="ack",
        default="ack",
        help="ack what was printed (the default)",
    )
    settle.add_argument(
        "--no-ack",
        dest="settle",
        action="store_const",
        const="none",
        help="leave them unacked: they are requeued when this command's connection closes",
    )
    settle.add_argument(
        "--reject",
        dest="settle",
        action="store_const",
        const="reject",
        help="nack them without requeue (to the dead-letter queue, if any)",
    )
    fetch.add_argument("--json", action="store_true", help="print JSON lines with every field")
    fetch.add_argument("--body-only", action="store_true", help="print only the bodies")
    fetch.epilog = (
        "output: one line per delivery, DELIVERY_ID<TAB>DELIVERY_COUNT<TAB>BODY (the id acks "
        "or nacks it; the count is 1 on a first delivery and grows with each redelivery; "
        "text decoded as UTF-8 with undecodable bytes escaped); --body-only prints only "
        "the bodies, --json one JSON object per delivery with every field (delivery_id, "
        "delivery_count, published_at, headers, body)"
    )


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    run: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:])
    connection_options(parser)
    parser.set_defaults(run=lambda args: guarded(run, args))
    return parser


def _connect(args: argparse.Namespace) -> Client:
    return connect_sync(args.url, namespace=args.namespace, client_name="minibroker-cli")


# ----------------------------------------------------------------- commands


def _run_declare(args: argparse.Namespace) -> int:
    with _connect(args) as mb:
        created = mb.declare_queue(
            args.name,
            max_length=args.max_length,
            max_length_bytes=args.max_length_bytes,
            overflow=args.overflow,
            message_ttl=args.message_ttl,
            visibility_timeout=args.visibility_timeout,
            max_deliveries=args.max_deliveries,
            dead_letter_queue=args.dead_letter_queue,
            durable=args.durable,
        )
    print("created" if created else "exists (same options)")
    return 0


def _run_delete(args: argparse.Namespace) -> int:
    with _connect(args) as mb:
        messages = mb.delete_queue(args.name)
    print(f"deleted ({messages} messages)")
    return 0


def _run_purge(args: argparse.Namespace) -> int:
    with _connect(args) as mb:
        purged = mb.purge_queue(args.name)
    print(f"purged {purged} messages")
    return 0


def _run_stats(args: argparse.Namespace) -> int:
    with _connect(args) as mb:
        stats = mb.queue_stats(args.name)
    if args.json:
        print(json.dumps(asdict(stats)))
        return 0
    for name, value in asdict(stats).items():
        if name == "options":
            shown = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
            print(f"{name:<19}{shown}")
        else:
            print(f"{name:<19}{value}")
    return 0


def _run_list(args: argparse.Namespace) -> int:
    with _connect(args) as mb:
        queues = mb.list_queues()
    if args.json:
        for info in queues:
            print(json.dumps(asdict(info)))
        return 0
    if queues:
        width = max(5, *(len(info.queue) for info in queues))
        print(f"{'QUEUE':<{width}}  {'READY':>9}  {'IN FLIGHT':>9}  {'CONSUMERS':>9}  DURABLE")
        for info in queues:
            print(
                f"{info.queue:<{width}}  {info.ready:>9}  {info.in_flight:>9}  "
                f"{info.consumers:>9}  {'yes' if info.durable else 'no'}"
            )
    return 0


def _run_put(args: argparse.Namespace) -> int:
    headers = parse_headers(args.header)
    total = 0
    with _connect(args) as mb:
        if args.bodies:
            total = _put(mb, args.queue, [b.encode() for b in args.bodies], headers)
        else:
            batch: list[bytes] = []
            for line in sys.stdin.buffer:
                batch.append(line.rstrip(b"\r\n"))
                if len(batch) >= STDIN_BATCH:
                    total += _put(mb, args.queue, batch, headers)
                    batch = []
            if batch:
                total += _put(mb, args.queue, batch, headers)
    if not args.quiet:
        print(f"put {total} message{'' if total == 1 else 's'} into {args.queue!r}")
    return 0


def _put(mb: Client, queue: str, bodies: list[bytes], headers: dict[str, str] | None) -> int:
    if headers is None:
        return mb.put_many(queue, bodies)
    return mb.put_many(queue, [(body, headers) for body in bodies])


def _run_fetch(args: argparse.Namespace) -> int:
    write = _printer(args)
    with _connect(args) as mb:
        deliveries = mb.fetch(
            args.queue,
            max_messages=args.max,
            wait=args.wait,
            visibility_timeout=args.visibility_timeout,
        )
        for delivery in deliveries:
            write(delivery)
        sys.stdout.flush()  # printed before acked: at-least-once, even through a pipe
        if deliveries and args.settle == "ack":
            mb.ack(deliveries)
        elif deliveries and args.settle == "reject":
            mb.nack(deliveries, requeue=False)
    if not deliveries:
        print("no messages", file=sys.stderr)
    return 0


# ------------------------------------------------------------------ output


def _printer(args: argparse.Namespace) -> Callable[[SyncDelivery], None]:
    out = sys.stdout

    if args.json:

        def write(d: SyncDelivery) -> None:
            line: dict[str, Any] = {
                "delivery_id": d.delivery_id,
                "delivery_count": d.delivery_count,
                "published_at": d.published_at,
                "headers": d.headers or {},
                "body": _json_bytes(d.body),
            }
            out.write(json.dumps(line, ensure_ascii=False) + "\n")

    elif args.body_only:

        def write(d: SyncDelivery) -> None:
            out.write(text(d.body) + "\n")

    else:

        def write(d: SyncDelivery) -> None:
            out.write(f"{d.delivery_id}\t{d.delivery_count}\t{text(d.body)}\n")

    return write


def _json_bytes(data: bytes) -> Any:
    """Text when the bytes are UTF-8, else ``{"base64": ...}``."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        import base64

        return {"base64": base64.b64encode(data).decode("ascii")}
