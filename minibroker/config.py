"""Server settings, from command-line flags or MINIBROKER_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from minibroker.access.permissions import Permissions
from minibroker.core.config import FsyncPolicy, Limits
from minibroker.defaults import DEFAULT_HOST, DEFAULT_PORT
from minibroker.protocol.codec import (
    DEFAULT_MAX_FRAME_BYTES,
    frame_payload_budget,
    message_limit_for,
)
from minibroker.value_class import Value, field, replace

#: Smallest ``max_frame_bytes``: the hello answer alone takes up to about 550 bytes
#: (with a 255-character namespace name), and must fit one frame.
MIN_FRAME_BYTES: Final = 1024


class ServerConfig(Value, frozen=True):
    """Everything ``BrokerServer`` needs; checked and made consistent on creation.

    ``max_frame_bytes`` bounds frames in both directions: the server refuses
    bigger ones and never sends one (batches are cut to fit). So that a single
    message always fits one frame, ``limits.max_message_bytes`` is lowered to
    ``message_limit_for(max_frame_bytes)`` when it is above it (for example
    with ``--max-frame-bytes 65536``); the hello answer shows the value in
    force. ``limits.max_item_bytes`` is set to what one frame carries, so the
    core refuses on the way in any item (a message with its headers, a
    record with its key) that it could not send out again.
    """

    host: str = DEFAULT_HOST
    #: 0 picks a free port (tests); the bound port is reported when ready.
    port: int = DEFAULT_PORT
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_connections: int = 10_000
    #: Of those, connections still in their handshake (hello, the AMQP
    #: handshake, a Kafka login, an SQS connection's first request) at once;
    #: more are refused, so that clients who never authenticate cannot take
    #: every slot. None: ``max_connections`` (at either limit, the oldest of
    #: them makes room for a new connection: server/app.py::_make_room).
    max_handshaking_connections: int | None = None
    #: token -> principal name; empty means no authentication.
    tokens: dict[str, str] | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    metrics_host: str = DEFAULT_HOST
    metrics_port: int | None = None
    data_dir: Path | None = None
    fsync: FsyncPolicy = "batch"
    limits: Limits = field(default_factory=Limits)
    #: Seconds to let clients finish after SIGTERM before connections are cut.
    shutdown_grace: float = 5.0
    #: Bytes of queued output per connection before reading from it pauses.
    outbound_high_water: int = 1024 * 1024
    #: Whether to accept TCP connections at all (embedded brokers don't).
    listen: bool = True
    #: Bytes of incomplete frames all connections together may hold
    #: (server/input_budget.py): past it, connections wait before reading more.
    partial_frame_budget: int = 256 * 1024 * 1024
    #: Seconds a new connection gets to complete hello before it is closed
    #: (slowloris protection); None waits forever.
    hello_timeout: float | None = 10.0
    #: Per-principal permissions (access/permissions.py); None allows everything.
    permissions: Permissions | None = None
    #: Microseconds to keep polling for input after each chunk instead of
    #: sleeping (server/busy_poll.py): lower latency for a busier CPU. 0 is off.
    busy_poll_us: float = 0.0
    #: Serve the HTTP face (JSON API, /openapi.json, /metrics) on this port of
    #: ``host`` (0: any free port); None: none. See docs/http.md.
    http_port: int | None = None
    #: Connections the HTTP face may have open at once; more are answered 503
    #: and closed (server/http_connections.py; SQS connections count in max_connections).
    http_max_connections: int = 1000
    #: Serve Kafka clients on this port (0: any free port); None: no Kafka front end.
    kafka_port: int | None = None
    #: Create Kafka topics on first use, with this many partitions (docs/kafka.md).
    kafka_auto_create_topics: bool = True
    kafka_partitions: int = 1
    #: Port of the AMQP 0-9-1 front end (minibroker/amqp/); None serves no AMQP.
    amqp_port: int | None = None
    #: Resource alarm (server/resource_alarm.py): resident memory above this many
    #: bytes, or less than ``disk_free_limit`` bytes free for ``data_dir``,
    #: blocks AMQP publishers. None: no such alarm.
    memory_high_watermark: int | None = None
    disk_free_limit: int | None = None
    #: Serve the SQS-compatible HTTP endpoint on this port of ``host`` (0: any free
    #: port); None: no SQS endpoint. See docs/sqs.md.
    sqs_port: int | None = None
    #: Access key id -> secret: the SQS endpoint then checks Signature V4 with
    #: them; None accepts any signature (the default, as test doubles do).
    sqs_keys: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if type(self.max_frame_bytes) is not int or self.max_frame_bytes < MIN_FRAME_BYTES:
            raise ValueError(
                f"max_frame_bytes must be an integer of at least {MIN_FRAME_BYTES}, "
                f"got {self.max_frame_bytes!r}"
            )
        budget = self.partial_frame_budget
        if type(budget) is not int or budget < 1:
            raise ValueError(f"partial_frame_budget must be a positive integer, got {budget!r}")
        cap = self.http_max_connections
        if type(cap) is not int or cap < 1:
            raise ValueError(f"http_max_connections must be a positive integer, got {cap!r}")
        self._check_ranges()
        if self.max_handshaking_connections is None:
            object.__setattr__(self, "max_handshaking_connections", self.max_connections)
        fitting = message_limit_for(self.max_frame_bytes)
        if self.limits.max_message_bytes > fitting:
            # Frozen: set the consistent limits the way dataclasses' own __init__ does.
            object.__setattr__(self, "limits", replace(self.limits, max_message_bytes=fitting))
        budget = frame_payload_budget(self.max_frame_bytes)
        if self.limits.max_item_bytes is None or self.limits.max_item_bytes > budget:
            object.__setattr__(self, "limits", replace(self.limits, max_item_bytes=budget))

    def _check_ranges(self) -> None:
        """Refuse values that would start a broker that cannot work: a port
        outside 0-65535, no connection allowed, a NaN, negative or absurd
        duration (a hello timeout of 1e-300 s closes every connection at once,
        a NaN one failed only at shutdown, deep in Trio)."""
        for name in _PORT_FIELDS:
            port = getattr(self, name)
            if port is not None and (type(port) is not int or not 0 <= port <= 65535):
                raise ValueError(f"{name} must be a port number from 0 to 65535, got {port!r}")
        _check_int(self, "max_connections", 1, None)
        _check_int(self, "max_handshaking_connections", 1, None, optional=True)
        for name in OBJECT_LIMITS:
            _check_int(self.limits, name, 1, None)
        _check_int(self, "kafka_partitions", 1, MAX_KAFKA_PARTITIONS)
        _check_int(self, "memory_high_watermark", 1, None, optional=True)
        _check_int(self, "disk_free_limit", 0, None, optional=True)
        _check_seconds(self, "hello_timeout", MIN_SECONDS, MAX_SETTING_SECONDS, optional=True)
        _check_seconds(self, "shutdown_grace", 0.0, MAX_SETTING_SECONDS)


#: Fields that name a TCP port (0: any free port; None, where allowed: not served).
_PORT_FIELDS: Final = ("port", "metrics_port", "http_port", "kafka_port", "amqp_port", "sqs_port")
#: The counts of objects clients make (minibroker/core/config.py::Limits), each a
#: ``minibroker serve`` flag: ``max_queues_per_namespace`` is ``--max-queues``.
OBJECT_LIMITS: Final = (
    "max_queues_per_namespace",
    "max_logs_per_namespace",
    "max_bindings_per_namespace",
    "max_groups_per_namespace",
    "max_exchanges_per_namespace",
    "max_namespaces",
    "max_queues_total",
    "max_logs_total",
)
#: The most partitions an auto-created Kafka topic may get (a CreateTopics
#: request has the same bound: minibroker/kafka/topics.py::MAX_PARTITIONS).
MAX_KAFKA_PARTITIONS: Final = 1000
#: Durations in settings: at least a millisecond (the HTTP API's bound too),
#: at most a day, which no timeout here needs more than.
MIN_SECONDS: Final = 0.001
MAX_SETTING_SECONDS: Final = 86_400.0


def _check_int(
    config: ServerConfig | Limits, name: str, low: int, high: int | None, *, optional: bool = False
) -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    if type(value) is not int or value < low or (high is not None and value > high):
        bound = f"of at least {low}" if high is None else f"from {low} to {high}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")


def _check_seconds(
    config: ServerConfig, name: str, low: float, high: float, *, optional: bool = False
) -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    if type(value) not in (int, float) or not low <= value <= high:  # NaN fails both
        raise ValueError(f"{name} must be between {low:g} and {high:g} seconds, got {value!r}")
