"""``minibroker serve``: run the broker as a server until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Final

import trio

from minibroker.access.auth import load_tokens_file
from minibroker.access.permissions import EVERYONE, load_permissions_file
from minibroker.config import ServerConfig
from minibroker.core.config import Limits
from minibroker.defaults import DEFAULT_HOST, DEFAULT_PORT
from minibroker.errors import BrokerError
from minibroker.protocol.codec import DEFAULT_MAX_FRAME_BYTES
from minibroker.server.accept import raise_open_file_limit
from minibroker.server.allocator import keep_large_blocks_mapped, small_objects_from_the_c_heap
from minibroker.server.app import BrokerServer, MissingExtra
from minibroker.server.memory_settle import MemorySettler

#: Upper bound of --busy-poll-us: beyond 10 ms it is just a spinning broker.
MAX_BUSY_POLL_US = 10_000.0

log = logging.getLogger("minibroker.server")

ENV_PREFIX = "MINIBROKER_"


def _env(name: str, default: Any) -> Any:
    """Each flag's default comes from MINIBROKER_<FLAG> when that is set.

    The value from the environment is a string, which argparse converts and
    checks with the flag's ``type`` like a command-line value, so a bad
    MINIBROKER_PORT is a usage error, not a traceback. (argparse does not
    check ``choices`` against defaults: ``_check_choices`` does that.)
    """
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def _check_choices(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a MINIBROKER_* value outside a flag's choices, as argparse does for flags."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if action.choices is not None and value not in action.choices:
            allowed = ", ".join(map(str, action.choices))
            env = ENV_PREFIX + action.dest.upper()
            parser.error(f"{env}={value!r} is not one of {allowed}")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the broker server",
        description="Run the broker. Every flag can also be set with a MINIBROKER_* "
        "environment variable, e.g. MINIBROKER_PORT=7000; flags win over the environment.",
    )
    parser.add_argument(
        "--host", default=_env("host", DEFAULT_HOST), help="address to bind (default %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=_env("port", DEFAULT_PORT),
        help="TCP port, 0 for any free port (default %(default)s)",
    )
    parser.add_argument(
        "--max-frame-bytes",
        type=int,
        default=_env("max_frame_bytes", DEFAULT_MAX_FRAME_BYTES),
        help="largest frame accepted and sent, at least 1024; clients learn it in hello "
        "and max_message_bytes is kept 4 KiB below it (default %(default)s)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=_env("max_connections", 10_000),
        help="concurrent connections (default %(default)s)",
    )
    parser.add_argument(
        "--max-handshaking-connections",
        type=int,
        default=_env("max_handshaking_connections", None),
        help="of those, connections still in their handshake (hello, AMQP handshake, Kafka "
        "login, an SQS connection's first request); past it, or at --max-connections, "
        "the oldest of them is closed to make room (default: --max-connections)",
    )
    _object_limit_flags(parser)
    parser.add_argument(
        "--partial-frame-budget",
        type=int,
        default=_env("partial_frame_budget", 256 * 1024 * 1024),
        help="bytes of incomplete frames all connections together may hold; past it a "
        "connection waits before reading more, or is refused before hello "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--auth-token", default=_env("auth_token", None), help="require this token in hello"
    )
    parser.add_argument(
        "--auth-file",
        default=_env("auth_file", None),
        help="file of accepted tokens: one 'name:token' (or bare 'token') per line, "
        "'#' starts a comment",
    )
    parser.add_argument(
        "--permissions",
        default=_env("permissions", None),
        help="file of per-principal grants, e.g. 'allow ci read,write queue:jobs.#' "
        "(default: every authenticated client may do everything; see docs/security.md)",
    )
    parser.add_argument(
        "--hello-timeout",
        type=float,
        default=_env("hello_timeout", 10.0),
        help="seconds a new connection gets to send hello before it is closed "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--busy-poll-us",
        type=float,
        default=_env("busy_poll_us", 0.0),
        help="after each input, poll for more for this many microseconds instead of "
        "sleeping: lower request/reply latency for more CPU, e.g. 300 (default: off; "
        "see docs/operations.md)",
    )
    parser.add_argument(
        "--tls-cert", default=_env("tls_cert", None), help="PEM certificate (chain) for TLS"
    )
    parser.add_argument("--tls-key", default=_env("tls_key", None), help="PEM private key for TLS")
    parser.add_argument(
        "--metrics-host",
        default=_env("metrics_host", DEFAULT_HOST),
        help="address for /metrics (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_env("metrics_port", None),
        help="serve Prometheus /metrics over HTTP on this port, 0 for any free port "
        "(default: no metrics endpoint)",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=_env("http_port", None),
        help="serve the HTTP face (JSON API, /openapi.json, /metrics) on this port of "
        "--host, 0 for any free port (default: none; see docs/http.md)",
    )
    parser.add_argument(
        "--http-max-connections",
        type=int,
        default=_env("http_max_connections", 1000),
        help="connections the HTTP face (--http-port) may have open at once; more are "
        "answered 503 and closed (default %(default)s)",
    )
    parser.add_argument(
        "--kafka-port",
        type=int,
        default=_env("kafka_port", None),
        help="also serve Kafka clients on this port, 0 for any free port "
        "(default: no Kafka port; see docs/kafka.md)",
    )
    parser.add_argument(
        "--kafka-auto-create",
        choices=["on", "off"],
        default=_env("kafka_auto_create", "on"),
        help="create a Kafka topic on first use, as Kafka's auto.create.topics.enable "
        "(default %(default)s; off: unknown topics get UNKNOWN_TOPIC_OR_PARTITION)",
    )
    parser.add_argument(
        "--kafka-partitions",
        type=int,
        default=_env("kafka_partitions", 1),
        help="partitions of an auto-created Kafka topic (default %(default)s)",
    )
    parser.add_argument(
        "--amqp-port",
        type=int,
        default=_env("amqp_port", None),
        help="also serve AMQP 0-9-1 (pika, aio-pika, kombu, Celery) on this port, 0 for "
        "any free port; 5672 is the usual one (default: no AMQP)",
    )
    parser.add_argument(
        "--memory-high-watermark",
        type=int,
        default=_env("memory_high_watermark", None),
        metavar="BYTES",
        help="resource alarm: while the server's resident memory is above BYTES, AMQP "
        "publishers are blocked (connection.blocked; default: no alarm)",
    )
    parser.add_argument(
        "--disk-free-limit",
        type=int,
        default=_env("disk_free_limit", None),
        metavar="BYTES",
        help="resource alarm: while the --data-dir file system has less than BYTES free, "
        "AMQP publishers are blocked (default: no alarm)",
    )
    parser.add_argument(
        "--sqs-port",
        type=int,
        default=_env("sqs_port", None),
        help="serve an SQS-compatible HTTP endpoint (boto3, aiobotocore, kombu) on this "
        "port of --host, 0 for any free port (default: none; see docs/sqs.md)",
    )
    parser.add_argument(
        "--sqs-keys",
        default=_env("sqs_keys", None),
        help="file of 'ACCESS_KEY_ID:SECRET_ACCESS_KEY' lines: the SQS endpoint then checks "
        "Signature V4 with them (default: any signature is accepted)",
    )
    parser.add_argument(
        "--data-dir",
        default=_env("data_dir", None),
        help="directory for durable queues and logs (default: memory only)",
    )
    parser.add_argument(
        "--fsync",
        choices=["always", "batch", "never"],
        default=_env("fsync", "batch"),
        help="when to fsync durable writes before confirming (default %(default)s); "
        "'never' fsyncs no write, only the structure recovery relies on: a segment "
        "when it is sealed, a created or deleted store, a clean stop (docs/storage.md)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=_env("shutdown_grace", 5.0),
        help="seconds clients get to finish on SIGTERM (default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=_env("log_level", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log verbosity, on stderr (default %(default)s)",
    )
    parser.set_defaults(run=run, serve_parser=parser)


#: Flag, Limits field and what it counts, of the object limits (docs/operations.md).
_OBJECT_LIMIT_FLAGS: Final = (
    ("--max-queues", "max_queues_per_namespace", "queues per namespace"),
    ("--max-logs", "max_logs_per_namespace", "logs per namespace (a Kafka partition is a log)"),
    ("--max-bindings", "max_bindings_per_namespace", "topic and AMQP bindings per namespace"),
    ("--max-groups", "max_groups_per_namespace", "consumer groups with commits per namespace"),
    ("--max-exchanges", "max_exchanges_per_namespace", "AMQP exchanges per namespace (vhost)"),
    ("--max-namespaces", "max_namespaces", "namespaces in use in the whole broker"),
    ("--max-queues-total", "max_queues_total", "queues in the whole broker"),
    ("--max-logs-total", "max_logs_total", "logs in the whole broker"),
)


def _object_limit_flags(parser: argparse.ArgumentParser) -> None:
    """The object limits: past one, creating one more is refused (data already
    on disk above a lowered limit still loads)."""
    defaults = Limits()
    for flag, name, what in _OBJECT_LIMIT_FLAGS:
        parser.add_argument(
            flag,
            type=int,
            default=_env(flag[2:], getattr(defaults, name)),
            help=f"most {what}; past it, creating one more is refused (default %(default)s)",
        )


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    tokens: dict[str, str] = {}
    if args.auth_token:
        tokens[args.auth_token] = "token"
    if args.auth_file:
        tokens.update(load_tokens_file(args.auth_file))
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("minibroker serve: --tls-cert and --tls-key must be given together")
    permissions = load_permissions_file(args.permissions) if args.permissions else None
    if permissions is not None:
        known = set(tokens.values()) if tokens else {"anonymous"}
        for principal in permissions.principals:
            if principal != EVERYONE and principal not in known:
                log.warning("permissions for %r, but no token is for that name", principal)
    if args.hello_timeout <= 0:
        raise ValueError("--hello-timeout must be a positive number of seconds")
    if not 0 <= args.busy_poll_us <= MAX_BUSY_POLL_US:
        raise ValueError(f"--busy-poll-us must be between 0 and {MAX_BUSY_POLL_US:g}")
    limits = Limits(
        **{name: getattr(args, flag[2:].replace("-", "_")) for flag, name, _ in _OBJECT_LIMIT_FLAGS}
    )
    return ServerConfig(
        host=args.host,
        port=args.port,
        max_frame_bytes=args.max_frame_bytes,
        max_connections=args.max_connections,
        max_handshaking_connections=args.max_handshaking_connections,
        partial_frame_budget=args.partial_frame_budget,
        tokens=tokens or None,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        metrics_host=args.metrics_host,
        metrics_port=int(args.metrics_port) if args.metrics_port is not None else None,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        fsync=args.fsync,
        shutdown_grace=args.shutdown_grace,
        hello_timeout=args.hello_timeout,
        permissions=permissions,
        busy_poll_us=args.busy_poll_us,
        http_port=int(args.http_port) if args.http_port is not None else None,
        http_max_connections=args.http_max_connections,
        kafka_port=int(args.kafka_port) if args.kafka_port is not None else None,
        kafka_auto_create_topics=args.kafka_auto_create == "on",
        kafka_partitions=args.kafka_partitions,
        amqp_port=int(args.amqp_port) if args.amqp_port is not None else None,
        memory_high_watermark=args.memory_high_watermark,
        disk_free_limit=args.disk_free_limit,
        sqs_port=int(args.sqs_port) if args.sqs_port is not None else None,
        sqs_keys=_sqs_keys(args.sqs_keys) if args.sqs_keys else None,
        limits=limits,
    )


def _sqs_keys(path: str) -> dict[str, str]:
    """--sqs-keys, read with the SQS front end's own parser (loaded only when given)."""
    from minibroker.sqs.signing import load_keys_file

    return load_keys_file(path)


def run(args: argparse.Namespace) -> int:
    _check_choices(args.serve_parser, args)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = config_from_args(args)
    except (OSError, ValueError) as exc:
        print(f"minibroker serve: {exc}", file=sys.stderr)
        return 2
    raise_open_file_limit()
    failure: OSError | BrokerError | MissingExtra | None = None
    keep_large_blocks_mapped()  # memory of big frames goes back to the system
    small_objects_from_the_c_heap()  # and that of a burst's small objects, when trimmed
    try:
        trio.run(serve_until_signalled, config)
    except* (OSError, BrokerError, MissingExtra) as group:
        # A port already taken, a data directory we may not write or that
        # another broker holds, a front end whose extra is not installed:
        # one line, not a traceback nested in groups.
        failure = _first_leaf(group)
    if failure is not None:
        print(f"minibroker serve: cannot start: {_describe(failure, config)}", file=sys.stderr)
        return 1
    return 0


def _first_leaf(
    group: BaseExceptionGroup[OSError | BrokerError | MissingExtra],
) -> OSError | BrokerError | MissingExtra:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, OSError | BrokerError | MissingExtra)
    return error


def _describe(error: OSError | BrokerError | MissingExtra, config: ServerConfig) -> str:
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        ports = f"--port {config.port}"
        if config.metrics_port is not None:
            ports += f" or --metrics-port {config.metrics_port}"
        return f"{error.strerror} ({ports})"
    return str(error)


async def serve_until_signalled(config: ServerConfig) -> None:
    server = BrokerServer(config)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("received %s, shutting down", signal.Signals(signum).name)
                    server.shutdown()
                    return

            nursery.start_soon(stop_on_signal)
            # Memory a burst left behind goes back once the server is idle:
            # little traffic on any port (msgpack frames alone missed Kafka and
            # AMQP bursts, input alone a consumer's replay, and any input at
            # all kept a pinged server busy).
            nursery.start_soon(MemorySettler(lambda: server.traffic).run)
            await server.stopped.wait()
            nursery.cancel_scope.cancel()
