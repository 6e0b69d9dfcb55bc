"""The Trio shell around the broker core: listeners, connections, timers, shutdown.

``BrokerServer.run`` is the whole server. It holds no broker logic: it
accepts streams (TCP, TLS or in-process memory streams), gives each one a
``Session`` and a ``Connection``, drives the core's deadlines, runs group
commit for durable writes, serves /metrics, and shuts down in order:
stop accepting, tell every client, let in-flight work finish (bounded),
fsync and close storage.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from minibroker._version import __version__
from minibroker.access.auth import Authenticator
from minibroker.config import ServerConfig
from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig
from minibroker.core.namespace import StorageOpener
from minibroker.errors import BrokerError, LimitExceeded, ShuttingDown
from minibroker.protocol.codec import DEFAULT_MAX_FRAME_BYTES, error_frame
from minibroker.protocol.session import Session, SessionSettings
from minibroker.protocol.stats import ProtocolStats
from minibroker.server.accept import serve_listeners
from minibroker.server.allocator import return_free_memory
from minibroker.server.busy_poll import BusyPoll
from minibroker.server.connection import (
    LINGER_DISCARD_BYTES,
    LINGER_SECONDS,
    READ_CHUNK,
    Connection,
    ReadyConnections,
)
from minibroker.server.durability import GroupCommit
from minibroker.server.http_connections import HttpConnections
from minibroker.server.input_budget import InputBudget
from minibroker.server.memory_stream import memory_stream_pair
from minibroker.server.metrics import BrokerCollector, make_registry, serve_metrics
from minibroker.server.resource_alarm import ResourceAlarm
from minibroker.server.shared_reader import SharedReader
from minibroker.server.timers import TimerService
from minibroker.server.wire_session import FrontEnd, SessionFactory, WireSession
from minibroker.storage.memory import MemoryLog

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from minibroker.amqp.connection import AmqpSession
    from minibroker.kafka.service import KafkaService, KafkaSettings
    from minibroker.sqs.session import SqsEndpoint

log = logging.getLogger("minibroker.server")

TLS_HANDSHAKE_TIMEOUT = 10.0


#: The packages the ``kafka`` extra brings that the Kafka front end imports.
KAFKA_EXTRA_PACKAGES = ("kio", "crc32c")


class MissingExtra(ImportError):
    """A front end was asked for whose libraries (an extra) are not installed."""


def _kafka_front_end() -> tuple[type[KafkaSettings], Callable[..., KafkaService]]:
    """Import the Kafka front end, which needs the ``kafka`` extra.

    Without it a Kafka port used to fail with a bare ``No module named
    'kio'``; this says which extra to install, and ``minibroker serve``
    prints it as its one-line start-up error.
    """
    try:
        from minibroker.kafka import service
        from minibroker.server import kafka_door
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in KAFKA_EXTRA_PACKAGES:
            raise
        raise MissingExtra(
            f"a Kafka port needs the kafka extra ({missing} is not installed): "
            "pip install 'minibroker[kafka]'",
            name=missing,
        ) from exc
    return service.KafkaSettings, kafka_door.add_kafka_front_end


class BrokerServer:
    """One broker: its core state plus the Trio tasks that serve it."""

    def __init__(self, config: ServerConfig | None = None, *, storage: StorageOpener | None = None):
        self.config = config = config or ServerConfig()
        if storage is None and config.data_dir is not None:
            from minibroker.server.datadir import DataDirectory

            storage = DataDirectory(config.data_dir)
            storage.lock()
        self.broker = Broker(
            CoreConfig(limits=config.limits, fsync=config.fsync),
            storage=storage,
            memory_log=MemoryLog,
        )
        self.stats = ProtocolStats()
        self.settings = SessionSettings(
            max_frame_bytes=config.max_frame_bytes,
            outbound_high_water=config.outbound_high_water,
            stats=self.stats,
        )
        self.auth = Authenticator(config.tokens, permissions=config.permissions)
        #: Every open connection's session, whichever front end it came through.
        self.sessions: dict[int, WireSession] = {}
        #: Every open connection (peer address, bytes in and out: the dashboard lists them).
        self.connections: dict[int, Connection] = {}
        #: Front ends served on ports of their own besides the msgpack port
        #: (AMQP, Kafka ...), each a session factory over this same core.
        self.front_ends: list[FrontEnd] = []
        #: The port each front end actually bound, by name, once listening.
        self.front_end_ports: dict[str, int] = {}
        #: The Kafka front end's shared state, when ``config.kafka_port`` is set.
        self.kafka: KafkaService | None = None
        if config.kafka_port is not None:
            KafkaSettings, add_kafka_front_end = _kafka_front_end()
            settings = KafkaSettings(
                advertised_host=_advertised(config.host),
                auto_create_topics=config.kafka_auto_create_topics,
                default_partitions=config.kafka_partitions,
            )
            self.kafka = add_kafka_front_end(self, config.kafka_port, settings)
        #: Memory and disk against their limits (``--memory-high-watermark`` ...).
        self.resource_alarm = ResourceAlarm(
            memory_limit=config.memory_high_watermark,
            disk_free_limit=config.disk_free_limit,
            data_dir=config.data_dir,
        )
        if config.amqp_port is not None:
            self.front_ends.append(self._amqp_front_end(config.amqp_port))
        self.timers = TimerService(self.broker)
        self.busy_poll = BusyPoll(config.busy_poll_us)
        #: Bytes of partial frames all connections may hold together.
        self.input_budget = InputBudget(config.partial_frame_budget, on_drained=return_free_memory)
        #: Connections a reader writes to directly after its chunk (see connection.py).
        self._ready_connections = ReadyConnections()
        #: Reads idle TCP connections in one task, while running (shared_reader.py).
        self._shared_reader: SharedReader | None = None
        self.group_commit = GroupCommit(self.broker)
        self.connections_accepted = 0
        #: Open connections whose handshake has not ended, oldest first
        #: (``--max-handshaking-connections``; see ``_make_room``): TLS
        #: handshakes in progress included, under negative ids.
        self.handshaking: dict[int, Connection | PendingTls] = {}
        self._tls_ids = itertools.count(-1, -1)
        #: TLS handshakes in progress: connections, not sessions yet.
        self.tls_handshakes = 0
        #: Bytes read on any connection of the front ends run by ``Connection``
        #: (msgpack, AMQP, Kafka, SQS); see ``input_received``.
        self.input_bytes = 0
        #: Bytes those connections sent, once they closed; see ``traffic``.
        self._closed_bytes_out = 0
        self._registry: CollectorRegistry | None = None
        #: The TCP port actually bound (useful with port 0), once listening.
        self.port: int | None = None
        self.metrics_port: int | None = None
        #: The HTTP face's port and state, once serving (``config.http_port``).
        self.http_port: int | None = None
        self.http_face: Any = None
        #: The SQS endpoint's port, once serving (``config.sqs_port``).
        self.sqs_port: int | None = None
        self._conn_ids = itertools.count(1)
        #: The cap and byte counts of the HTTP face's connections (http_listener.py).
        self.http_connections = HttpConnections(config.http_max_connections, self._conn_ids)
        #: The SQS endpoint's shared state, when ``config.sqs_port`` is set.
        self.sqs: SqsEndpoint | None = None
        if config.sqs_port is not None:
            from minibroker.server.sqs_app import add_sqs_front_end

            self.sqs = add_sqs_front_end(self, config.sqs_port)
        self._nursery: trio.Nursery | None = None
        self._connections_nursery: trio.Nursery | None = None
        self._shutdown_requested = trio.Event()
        self._storage_closed = False
        #: Set once ``run`` has shut down completely (storage closed).
        self.stopped = trio.Event()
        self._all_closed = trio.Event()
        self._accepting = True
        #: One per accept loop (the msgpack port and each front end's).
        self._accept_scopes: list[trio.CancelScope] = []

    @property
    def registry(self) -> CollectorRegistry:
        """This broker's Prometheus registry, built on first use (see server/metrics.py)."""
        if self._registry is None:
            self._registry = make_registry(
                BrokerCollector(
                    self.broker,
                    self.stats,
                    connections=lambda: len(self.sessions),
                    accepted=lambda: self.connections_accepted,
                )
            )
        return self._registry

    def _amqp_front_end(self, port: int) -> FrontEnd:
        # pamqp and minibroker.amqp load only when an AMQP port is asked for
        from minibroker.amqp.connection import AmqpSession, AmqpSettings

        blocking = None
        if self.resource_alarm.enabled:
            from minibroker.amqp.blocking import Blocking

            blocking = Blocking()
            self.resource_alarm.listeners.append(blocking.set)
        settings = AmqpSettings(
            authenticate=self.auth.authenticate,
            outbound_high_water=self.config.outbound_high_water,
            blocking=blocking,
        )

        def make_session(broker: Broker, conn_id: int, peer_name: str) -> AmqpSession:
            return AmqpSession(broker, conn_id, settings, peer_name)

        return FrontEnd("amqp", self.config.host, port, make_session)

    @property
    def input_received(self) -> int:
        """Bytes received on every port, HTTP's included: how busy the memory
        settler finds the server (cli/serve.py, server/memory_settle.py)."""
        return self.input_bytes + self.http_connections.bytes_in

    @property
    def traffic(self) -> int:
        """Bytes received and sent on every port: how busy the memory settler
        finds the server. Output counts: a consumer replaying a log sends
        megabytes a second on a few small requests, and a server doing that
        is not idle (it used to get a full collection and a heap trim every
        second, a fifth of its CPU during a Kafka replay)."""
        sent = self._closed_bytes_out + sum(c.bytes_out for c in self.connections.values())
        return self.input_received + sent + self.http_connections.bytes_out

    def _after_input(self, received: int = 0) -> None:
        """Run by a connection after each chunk of input it dispatched (``received`` bytes)."""
        self.input_bytes += received
        self.timers.poke()
        if self.busy_poll.enabled:
            self.busy_poll.poke()

    # ------------------------------------------------------------- running

    async def run(
        self, *, task_status: trio.TaskStatus[BrokerServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until ``shutdown()`` is called; ``task_status.started`` once ready."""
        config = self.config
        self.broker.clock.epoch_offset = time.time() - trio.current_time()
        try:
            self._recover_namespaces()
            if self.sqs is not None:
                self.sqs.handler.recover()  # SQS settings and FIFO groups, before any client
            await self._serve(config, task_status)
        finally:
            self._close_storage()
        self.stopped.set()

    async def _serve(
        self, config: ServerConfig, task_status: trio.TaskStatus[BrokerServer]
    ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.timers.run)
            self._shared_reader = SharedReader(self._ready_connections)
            nursery.start_soon(self._shared_reader.run)
            if self.resource_alarm.enabled:
                nursery.start_soon(self.resource_alarm.run)
            if self.busy_poll.enabled:
                nursery.start_soon(self.busy_poll.run)
            if self.broker.durability.holds_confirms:
                # Group commit; "always" syncs inline (Durability.written) and
                # "never" (or no data directory) not at all.
                nursery.start_soon(self.group_commit.run)
            async with trio.open_nursery() as connections:
                self._connections_nursery = connections
                listeners: list[trio.SocketListener] = []
                if config.listen:
                    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
                    self.port = listeners[0].socket.getsockname()[1]
                    connections.start_soon(self._accept_loop, listeners, connections, None, True)
                for front_end in self.front_ends:
                    front_listeners = await trio.open_tcp_listeners(
                        front_end.port, host=front_end.host
                    )
                    bound = front_listeners[0].socket.getsockname()[1]
                    self.front_end_ports[front_end.name] = bound
                    log.info(
                        "%s front end listening on %s",
                        front_end.name,
                        _host_port(front_end.host, bound),
                    )
                    connections.start_soon(
                        self._accept_loop,
                        front_listeners,
                        connections,
                        front_end.make_session,
                        front_end.tls,
                    )
                if config.metrics_port is not None:
                    self.metrics_port = await nursery.start(
                        partial(serve_metrics, broker=self.broker),
                        self.registry,
                        config.metrics_host,
                        config.metrics_port,
                    )
                if config.http_port is not None:
                    from minibroker.server.http_app import serve_http  # starlette: only when used

                    self.http_port = await nursery.start(serve_http, self)
                if self.sqs is not None:
                    from minibroker.server.sqs_app import sqs_listening

                    self.sqs_port = sqs_listening(self, self.sqs)
                self._log_start()
                task_status.started(self)
                await self._shutdown_requested.wait()
                await self._graceful_close(connections)
            nursery.cancel_scope.cancel()

    def _close_storage(self) -> None:
        """Close every store once, then release the data directory's lock."""
        if self._storage_closed:
            return
        self._storage_closed = True
        self.broker.close()

    def _recover_namespaces(self) -> None:
        """Open every namespace found in the data directory, so durable queues and
        logs are recovered (and their recovery logged) before the first client."""
        if self.broker.storage is None:
            return  # memory only: nothing to recover, and the disk store stays unloaded
        from minibroker.server.datadir import DataDirectory

        if isinstance(self.broker.storage, DataDirectory):
            for namespace in self.broker.storage.existing_namespaces():
                self.broker.namespace(namespace, recovering=True)
            if self.config.amqp_port is not None:
                from minibroker.amqp.vhost import recover_vhosts

                recover_vhosts(list(self.broker.namespaces.values()))

    @property
    def url(self) -> str | None:
        """``minibroker://host:port`` (``minibrokers://`` with TLS) once
        listening on TCP; None for a broker that serves in-process only."""
        if self.port is None:
            return None
        scheme = "minibrokers" if self.config.tls_cert else "minibroker"
        return f"{scheme}://{_host_port(self.config.host, self.port)}"

    def shutdown(self) -> None:
        """Ask the server to stop (idempotent); ``run`` returns once it has."""
        self._shutdown_requested.set()

    async def _graceful_close(self, connections: trio.Nursery) -> None:
        self._accepting = False
        # Cancelling the accept tasks closes their listeners. (Closing a
        # listener under a task blocked in accept() would fail that task with
        # ClosedResourceError and take the whole server down with it.)
        for scope in self._accept_scopes:
            scope.cancel()
        log.info("shutting down: %d connections to close", len(self.sessions))
        for session in list(self.sessions.values()):
            session.shutdown()
        with trio.move_on_after(self.config.shutdown_grace):
            while self.sessions:
                await self._all_closed.wait()
        connections.cancel_scope.cancel()
        self.group_commit.sync_now()
        self._close_storage()
        log.info("stopped")

    def _log_start(self) -> None:
        config = self.config
        where = _host_port(config.host, self.port) if config.listen else "in-process only"
        log.info(
            "minibroker %s listening on %s (tls=%s, auth=%s, permissions=%s, data_dir=%s, "
            "fsync=%s, max_frame_bytes=%d, max_connections=%d, metrics=%s, busy_poll=%s)",
            __version__,
            where,
            "on" if config.tls_cert else "off",
            "token" if self.auth.enabled else "off",
            "on" if config.permissions is not None else "off",
            config.data_dir or "none (memory)",
            config.fsync,
            config.max_frame_bytes,
            config.max_connections,
            f"http://{_host_port(config.metrics_host, self.metrics_port)}/metrics"
            if self.metrics_port is not None
            else "off",
            f"{config.busy_poll_us:g} us" if config.busy_poll_us else "off",
        )

    # --------------------------------------------------------- connections

    async def _accept_loop(
        self,
        listeners: Sequence[trio.abc.Listener[trio.SocketStream]],
        handler_nursery: trio.Nursery,
        make_session: SessionFactory | None,
        use_tls: bool,
    ) -> None:
        """Accept on ``listeners``; ``make_session`` None means the msgpack protocol."""
        tls = self._tls_context() if use_tls else None

        async def handle(stream: trio.SocketStream) -> None:
            peer = _peer_name(stream)
            if tls is None:
                await self.serve_stream(stream, peer, make_session)
                return
            ssl_stream = trio.SSLStream(stream, tls, server_side=True)
            if await self._tls_handshake(ssl_stream, peer):
                await self.serve_stream(ssl_stream, peer, make_session)

        # Connections run in ``handler_nursery``, so that cancelling the accept
        # scope at shutdown stops accepting without cutting live connections.
        scope = trio.CancelScope()
        self._accept_scopes.append(scope)
        if not self._accepting:
            scope.cancel()
        with scope:
            await serve_listeners(handle, listeners, handler_nursery=handler_nursery)

    async def _tls_handshake(
        self, ssl_stream: trio.SSLStream[trio.SocketStream], peer: str
    ) -> bool:
        """Run the server side of a TLS handshake; False (the stream closed) if it failed.

        The handshake counts as a connection in its handshake (``_make_room``):
        before, connections that never sent a ClientHello were not counted
        anywhere, and any number of them could be held for 10 s each.
        """
        if not self._accepting or not self._make_room():
            log.warning("refused a connection: %s", self._refusal().message)
            await trio.aclose_forcefully(ssl_stream)
            return False
        key = next(self._tls_ids)
        pending = self.handshaking[key] = PendingTls()
        self.tls_handshakes += 1
        try:
            with pending.scope, trio.fail_after(TLS_HANDSHAKE_TIMEOUT):
                await ssl_stream.do_handshake()
        except (trio.TooSlowError, trio.BrokenResourceError) as exc:
            log.info("TLS handshake with %s failed: %s", peer, exc or type(exc).__name__)
            await trio.aclose_forcefully(ssl_stream)
            return False
        finally:
            self.handshaking.pop(key, None)
            self.tls_handshakes -= 1
        if pending.scope.cancelled_caught:
            log.info("TLS handshake with %s %s", peer, pending.close_reason)
            await trio.aclose_forcefully(ssl_stream)
            return False
        return True

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.config.tls_cert is None:
            return None
        cert, key = self.config.tls_cert, self.config.tls_key or self.config.tls_cert
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(cert), str(key))
        except OSError as exc:  # ssl.SSLError too; neither names the file
            reason = exc.strerror or str(exc)
            raise OSError(f"cannot load --tls-cert {cert} / --tls-key {key}: {reason}") from exc
        return context

    def _native_session(self, broker: Broker, conn_id: int, peer_name: str) -> Session:
        """The msgpack protocol's session (docs/protocol.md) for a new connection."""
        return Session(broker, conn_id, settings=self.settings, auth=self.auth, peer_name=peer_name)

    async def serve_stream(
        self,
        stream: trio.abc.Stream,
        peer_name: str,
        make_session: SessionFactory | None = None,
    ) -> None:
        """Serve one client over any Trio stream until it closes.

        ``make_session`` picks the front end (the msgpack protocol by default).
        """
        self.connections_accepted += 1
        if not self._accepting or not self._make_room():
            if make_session is None:
                await _refuse(stream, self._refusal())
            else:
                # The refusal frame is msgpack; another protocol's client
                # just sees the connection close, as its own brokers do.
                log.warning("refused a connection: %s", self._refusal().message)
                await trio.aclose_forcefully(stream)
            return
        conn_id = next(self._conn_ids)
        session = (make_session or self._native_session)(self.broker, conn_id, peer_name)
        self.sessions[conn_id] = session
        connection = self.connections[conn_id] = Connection(
            stream,
            session,
            after_input=self._after_input,
            peer_name=peer_name,
            hello_timeout=self.config.hello_timeout,
            ready=self._ready_connections,
            input_budget=self.input_budget,
            shared_reader=self._shared_reader,
        )
        if not session.handshake_done:
            self.handshaking[conn_id] = connection
            session.on_handshake = partial(self._handshake_ended, conn_id)
        log.info("connection %d opened from %s", conn_id, peer_name)
        try:
            await connection.run()
        except Exception:
            # A bug met by one connection ends that connection, never the server.
            log.exception("connection %d from %s failed", conn_id, peer_name)
            connection.close_reason = "internal error (see the log)"
        finally:
            self.handshaking.pop(conn_id, None)
            session.on_handshake = _no_callback  # (a cycle through the server otherwise)
            del self.sessions[conn_id]
            del self.connections[conn_id]
            self._closed_bytes_out += connection.bytes_out
            log.info(
                "connection %d from %s closed (%s): %s",
                conn_id,
                peer_name,
                session.client_name or "no hello",
                connection.close_reason,
            )
            if not self.sessions:
                self._all_closed.set()
                self._all_closed = trio.Event()

    def _make_room(self) -> bool:
        """Whether a new connection may be served; at a limit, close the
        oldest connection still in its handshake to make room for it.

        Without that, clients that connect and never authenticate (each
        closed by the hello timeout, then back at once) held every slot,
        and no one else could connect, on any port. Now they can hold at
        most ``--max-handshaking-connections`` slots, and only for as long
        as it takes that many newer connections to arrive; a client that
        completes its handshake in that time keeps its slot. Only when
        every connection has completed its handshake is the new one refused.
        """
        config = self.config
        at_limit = len(self.sessions) + self.tls_handshakes >= config.max_connections
        cap = config.max_handshaking_connections
        assert cap is not None  # ServerConfig sets it
        if not at_limit and len(self.handshaking) < cap:
            return True
        if not self.handshaking:
            return False
        conn_id, oldest = next(iter(self.handshaking.items()))
        del self.handshaking[conn_id]
        what = "connections" if at_limit else "connections in their handshake"
        limit = config.max_connections if at_limit else cap
        oldest.abort(f"closed to make room: {what} at the limit ({limit}), oldest handshake first")
        return True

    def _handshake_ended(self, conn_id: int) -> None:
        self.handshaking.pop(conn_id, None)

    def _refusal(self) -> BrokerError:
        if not self._accepting:
            return ShuttingDown("the server is shutting down")
        current, limit = len(self.sessions), self.config.max_connections
        return LimitExceeded(f"too many connections ({current} of {limit}); try again later")

    def open_in_process_stream(self) -> trio.abc.Stream:
        """A connected in-memory stream to this broker: no socket, same protocol."""
        if self._connections_nursery is None or not self._accepting:
            raise RuntimeError("the broker is not running")
        client_side, server_side = memory_stream_pair()
        self._connections_nursery.start_soon(self.serve_stream, server_side, "in-process")
        return client_side


class PendingTls:
    """A TLS handshake in progress, which ``_make_room`` may end like a connection."""

    __slots__ = ("close_reason", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.close_reason = ""

    def abort(self, reason: str) -> None:
        self.close_reason = reason
        self.scope.cancel()


def _no_callback() -> None:
    """A finished session's ``on_handshake``."""


async def _refuse(stream: trio.abc.Stream, error: BrokerError) -> None:
    log.warning("refused a connection: %s", error.message)
    with trio.move_on_after(LINGER_SECONDS):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(error_frame(None, error, DEFAULT_MAX_FRAME_BYTES))
            # Half-close, then drain what the client already sent (its hello)
            # until it closes too: closing with unread input would send RST,
            # and the client could lose the error before reading it.
            send_eof = getattr(stream, "send_eof", None)
            if send_eof is not None:
                await send_eof()
            drained = 0
            while drained < LINGER_DISCARD_BYTES:
                data = await stream.receive_some(READ_CHUNK)
                if not data:
                    break
                drained += len(data)
    await trio.aclose_forcefully(stream)


def _host_port(host: str, port: int | None) -> str:
    """``host:port``, with an IPv6 address in brackets so the port stays unambiguous."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _advertised(host: str) -> str:
    """The address to tell clients to reconnect to: a wildcard bind is not one."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _peer_name(stream: trio.SocketStream) -> str:
    try:
        address: Any = stream.socket.getpeername()
        return f"{address[0]}:{address[1]}"
    except OSError:
        return "unknown"
