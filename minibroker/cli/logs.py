"""``minibroker log ...``: create, append to, read, tail and inspect logs from a shell.

    minibroker log create events --retention-seconds 604800
    minibroker log append events 'first' 'second'          # one batch: "appended 2 records ..."
    printf 'a\\nb\\n' | minibroker log append events        # one record per stdin line
    minibroker log read events --start earliest --max 10
    minibroker log tail events --group cli                  # until Ctrl-C, resumes next time
    minibroker log stats events
    minibroker log list
    minibroker log delete events

Records print one per line as ``offset<TAB>key<TAB>body`` (bodies decoded as
UTF-8, undecodable bytes escaped), or as JSON lines with ``--json``;
``--help`` of ``read`` and ``tail`` says so too. ``append`` prints one line
per batch it sent (a batch per 1000 stdin lines), saying how many records
went in at which offsets. Errors
print ``error: <code>: <message>`` on stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from minibroker.cli.common import connection_options, guarded, int64, parse_headers, text
from minibroker.client.logs import Record, Start
from minibroker.client.pushes import SubscriptionEnded
from minibroker.client.sync import Client, connect_sync

#: What ``read`` and ``tail`` print, for their ``--help``.
RECORD_COLUMNS = (
    "output: one line per record, OFFSET<TAB>KEY<TAB>BODY (KEY empty when the record has "
    "none; text decoded as UTF-8 with undecodable bytes escaped); --body-only prints only "
    "the bodies, --json one JSON object per record with every field (offset, timestamp_ms, "
    "key, headers, body)"
)
#: Records per append frame when reading stdin.
STDIN_BATCH = 1000
#: How often ``log tail`` looks up from waiting to see whether it should stop.
TAIL_POLL_SECONDS = 0.2


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "log",
        help="create, append to, read and tail logs",
        description="Work with logs: append-only, offset-addressed, replayable streams.",
    )
    sub = parser.add_subparsers(dest="log_command", metavar="ACTION", required=True)

    create = _command(sub, "create", "create a log (no-op if it exists alike)", _run_create)
    create.add_argument("name")
    create.add_argument("--retention-bytes", type=int64, default=None, help="size-based retention")
    create.add_argument("--retention-seconds", type=float, default=None, help="age-based retention")
    create.add_argument("--segment-bytes", type=int64, default=None, help="segment size")

    append = _command(
        sub,
        "append",
        "append records (arguments, or stdin lines); prints the offsets of each batch",
        _run_append,
    )
    append.add_argument("name")
    append.add_argument("bodies", nargs="*", metavar="BODY", help="record bodies (default: stdin)")
    append.add_argument("--key", default=None, help="key of every appended record")
    append.add_argument(
        "--header",
        "-H",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a header of every appended record (repeatable)",
    )

    read = _command(sub, "read", "read records and exit", _run_read)
    read.add_argument("name")
    _start_options(read, default_start=None, otherwise="earliest")
    read.add_argument("--max", type=int64, default=100, help="most records (default %(default)s)")
    read.add_argument(
        "--wait", type=float, default=0.0, help="seconds to wait for records if none are there"
    )
    _format_options(read)
    read.epilog = RECORD_COLUMNS

    tail = _command(sub, "tail", "print records as they arrive, until Ctrl-C", _run_tail)
    tail.add_argument("name")
    _start_options(tail, default_start=None, otherwise="latest")
    _format_options(tail)
    tail.epilog = RECORD_COLUMNS

    stats = _command(sub, "stats", "offsets, size, segments and groups of a log", _run_stats)
    stats.add_argument("name")
    _command(sub, "list", "list the logs", _run_list)
    delete = _command(sub, "delete", "delete a log and its records", _run_delete)
    delete.add_argument("name")


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


def _start_options(
    parser: argparse.ArgumentParser, default_start: str | None, otherwise: str
) -> None:
    shown = default_start or f"committed with --group, else {otherwise}"
    parser.add_argument(
        "--start",
        default=default_start,
        help=f"offset, earliest, latest or committed (default: {shown})",
    )
    parser.add_argument(
        "--timestamp-ms", type=int64, default=None, help="start at the first record at/after this"
    )
    parser.add_argument("--group", default=None, help="consumer group (commits as it reads)")


def _format_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON lines with every field")
    parser.add_argument("--body-only", action="store_true", help="print only the bodies")


def _parse_start(value: str | None) -> Start | None:
    if value is None:
        return None
    try:
        return int64(value)
    except argparse.ArgumentTypeError as exc:
        if value.lstrip("-").isdigit():
            raise SystemExit(f"error: --start {exc}") from None
        return value


def _connect(args: argparse.Namespace) -> Client:
    return connect_sync(args.url, namespace=args.namespace, client_name="minibroker-cli")


# ----------------------------------------------------------------- commands


def _run_create(args: argparse.Namespace) -> int:
    with _connect(args) as mb:
        created = mb.create_log(
            args.name, args.retention_bytes, args.retention_seconds, args.segment_bytes
        )
    print("created" if created else "exists (same options)")
    return 0


def _run_append(args: argparse.Namespace) -> int:
    key = args.key.encode() if args.key is not None else None
    headers = parse_headers(args.header)
    with _connect(args) as mb:
        if args.bodies:
            _append(mb, args.name, [b.encode() for b in args.bodies], key, headers)
            return 0
        batch: list[bytes] = []
        for line in sys.stdin.buffer:
            batch.append(line.rstrip(b"\r\n"))
            if len(batch) >= STDIN_BATCH:
                _append(mb, args.name, batch, key, headers)
                batch = []
        if batch:
            _append(mb, args.name, batch, key, headers)
    return 0


def _append(
    mb: Client, log: str, bodies: list[bytes], key: bytes | None, headers: dict[str, str] | None
) -> None:
    """Append one batch and say where it went (its offsets are consecutive)."""
    if key is None and headers is None:
        first = mb.append_many(log, bodies)
    else:
        first = mb.append_many(log, [{"body": b, "key": key, "headers": headers} for b in bodies])
    if len(bodies) == 1:
        print(f"appended 1 record to {log!r} at offset {first}", flush=True)
    else:
        last = first + len(bodies) - 1
        print(f"appended {len(bodies)} records to {log!r} at offsets {first}-{last}", flush=True)


def _run_read(args: argparse.Namespace) -> int:
    write = _printer(args)
    with _connect(args) as mb:
        start = _parse_start(args.start)
        if start is None:
            start = "committed" if args.group is not None else "earliest"
        records = mb.read(
            args.name,
            start=start,
            timestamp_ms=args.timestamp_ms,
            group=args.group,
            max_records=args.max,
            wait=args.wait,
        )
        for record in records:
            write(record)
        if args.group is not None and records:
            mb.commit(args.name, args.group, records[-1].offset + 1)
    return 0


def _run_tail(args: argparse.Namespace) -> int:
    write = _printer(args)
    # Ctrl-C (or SIGTERM) sets a flag instead of raising KeyboardInterrupt, which
    # could land inside the client's own locking and sending; the loop checks the
    # flag between short waits and leaves the tail normally, which commits.
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda _signum, _frame: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with (
            _connect(args) as mb,
            mb.tail(
                args.name,
                start=_parse_start(args.start),
                group=args.group,
                timestamp_ms=args.timestamp_ms,
            ) as tail,
        ):
            print(
                f"tailing {args.name!r} from offset {tail.position}; Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
            while not stop.is_set():
                try:
                    record = tail.get(timeout=TAIL_POLL_SECONDS)
                except TimeoutError:
                    continue
                except SubscriptionEnded as exc:
                    print(f"the tail ended: {exc.message}", file=sys.stderr)
                    return 1
                write(record)
            print("stopped", file=sys.stderr)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _run_stats(args: argparse.Namespace) -> int:
    with _connect(args) as mb:
        stats = mb.log_stats(args.name)
    print(f"offsets        [{stats.first_offset}, {stats.next_offset})")
    print(f"records        {stats.records}")
    print(f"bytes          {stats.bytes}")
    print(f"segments       {stats.segments}")
    options = ", ".join(f"{k}={v}" for k, v in stats.options.items() if v is not None)
    print(f"options        {options or 'defaults'}")
    print(f"tails          {stats.tails}")
    for group, lag in sorted(stats.groups.items()):
        print(f"group {group}: committed {lag.committed}, lag {lag.lag}")
    return 0


def _run_list(args: argparse.Namespace) -> int:
    with _connect(args) as mb:
        for name in mb.list_logs():
            print(name)
    return 0


def _run_delete(args: argparse.Namespace) -> int:
    with _connect(args) as mb:
        records = mb.delete_log(args.name)
    print(f"deleted ({records} records)")
    return 0


# ------------------------------------------------------------------ output


def _printer(args: argparse.Namespace) -> Callable[[Record], None]:
    out = sys.stdout

    if args.json:

        def write(record: Record) -> None:
            line: dict[str, Any] = {
                "offset": record.offset,
                "timestamp_ms": record.timestamp_ms,
                "key": _json_bytes(record.key),
                "headers": record.headers,
                "body": _json_bytes(record.body),
            }
            out.write(json.dumps(line) + "\n")
            out.flush()

    elif args.body_only:

        def write(record: Record) -> None:
            out.write(text(record.body) + "\n")
            out.flush()

    else:

        def write(record: Record) -> None:
            key = text(record.key) if record.key is not None else ""
            out.write(f"{record.offset}\t{key}\t{text(record.body)}\n")
            out.flush()

    return write


def _json_bytes(data: bytes | None) -> Any:
    """Text when the bytes are UTF-8, else ``{"base64": ...}``."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}
