"""Prometheus metrics: one registry per broker, read from plain counters at scrape time.

Each broker gets its own ``CollectorRegistry`` (never the global default), so
several embedded brokers in one test process don't collide. The hot path
never touches prometheus objects: sessions and models bump plain ints, and
the collector below turns them into samples when /metrics is scraped.
Each model's families come from its ``MetricSource``, listed in ``METRIC_SOURCES``.

prometheus-client is imported only when a registry is built or scraped:
importing it (with its HTTP and WSGI exposition helpers) costs about as much
as a tenth of ``minibroker serve``'s start-up, and most brokers (embedded,
tests, ``serve`` without ``--metrics-port``) are never scraped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, cast

import trio

from minibroker.core.broker import Broker
from minibroker.protocol.stats import ProtocolStats
from minibroker.server.health import health
from minibroker.server.log_metrics import log_metrics
from minibroker.server.queue_metrics import queue_metrics
from minibroker.server.rpc_metrics import rpc_metrics
from minibroker.server.topic_metrics import topic_metrics

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector

log = logging.getLogger("minibroker.server")

#: A function yielding metric families for one model (see core model stats).
MetricSource = Callable[[Broker], Iterable["Metric"]]

#: Every model's metric families, one source per model.
METRIC_SOURCES: tuple[MetricSource, ...] = (log_metrics, queue_metrics, rpc_metrics, topic_metrics)


class BrokerCollector:
    """The broker's own families plus every model's (``METRIC_SOURCES``): a
    prometheus ``Collector`` by shape (``collect``), so defining it imports nothing."""

    def __init__(
        self,
        broker: Broker,
        stats: ProtocolStats,
        connections: Callable[[], int],
        accepted: Callable[[], int],
    ) -> None:
        self._broker = broker
        self._stats = stats
        self._connections = connections
        self._accepted = accepted

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self._stats
        yield GaugeMetricFamily(
            "minibroker_connections", "Open client connections", value=self._connections()
        )
        yield CounterMetricFamily(
            "minibroker_connections_accepted", "Connections accepted", value=self._accepted()
        )
        yield CounterMetricFamily("minibroker_frames_in", "Frames received", value=stats.frames_in)
        yield CounterMetricFamily("minibroker_frames_out", "Frames sent", value=stats.frames_out)
        yield CounterMetricFamily("minibroker_bytes_in", "Bytes received", value=stats.bytes_in)
        yield CounterMetricFamily("minibroker_bytes_out", "Bytes sent", value=stats.bytes_out)
        errors = CounterMetricFamily(
            "minibroker_errors", "Error frames sent, by error code", labels=["code"]
        )
        for code, count in sorted(stats.errors.items()):
            errors.add_metric([code], count)
        yield errors
        for source in METRIC_SOURCES:
            yield from source(self._broker)


def make_registry(collector: BrokerCollector) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=True)
    registry.register(cast("Collector", collector))
    return registry


async def serve_metrics(
    registry: CollectorRegistry,
    host: str,
    port: int,
    *,
    broker: Broker | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer ``GET /metrics`` (and, given the ``broker``, ``GET /health``:
    server/health.py) over HTTP/1.0 on the event loop.

    Serving from the loop (not prometheus-client's threaded server) means the
    collector reads broker state from the thread that mutates it, so a scrape
    never sees a half-updated dictionary.
    """
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])

    async def handle(stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(10):
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 8192:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    request += chunk
                line = request.split(b"\r\n", 1)[0].split()
                path = line[1].split(b"?")[0] if len(line) >= 2 and line[0] == b"GET" else b""
                if path == b"/metrics":
                    body = generate_latest(registry)
                    head = (
                        f"HTTP/1.0 200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n"
                    ).encode()
                elif path == b"/health" and broker is not None:
                    status, body = health(broker)
                    reason = "OK" if status == 200 else "Service Unavailable"
                    head = (
                        f"HTTP/1.0 {status} {reason}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n"
                    ).encode()
                else:
                    body = b"not found; try /metrics\n"
                    head = f"HTTP/1.0 404 Not Found\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                await stream.send_all(head + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    await trio.serve_listeners(handle, listeners)
