"""Testing helpers and the pytest plugin (registered through the pytest11 entry point).

Two ways to put a broker under a test:

* Trio tests get an in-process broker (no socket, memory storage, started in
  about a millisecond) through the ``minibroker_broker`` and ``minibroker_client``
  fixtures. With pytest-trio's MockClock (``autojump_threshold=0``) every
  timeout in the broker is instant: the broker reads only the Trio clock.
* Synchronous and asyncio code gets a real TCP server running in a thread:
  ``run_in_thread()`` as a context manager, or the session-wide
  ``minibroker_server`` fixture with ``minibroker_url``, which carries a fresh
  namespace for each test so queue and topic names never collide between tests.
  With pytest-asyncio installed, ``minibroker_aio_client`` is an asyncio
  client on that URL (why a thread and not Trio's guest mode: docs/testing.md).

``ThreadedBroker.advance(seconds)`` moves the threaded server's clock forward
(a test-only clock) so visibility timeouts, TTLs and deadlines can be tested
from plain code without waiting.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest
import sniffio
import trio
import trio.testing

from minibroker.client.aio import Client as AioClient
from minibroker.client.aio import connect as aio_connect
from minibroker.client.sync import Client as SyncClient
from minibroker.client.sync import connect_sync
from minibroker.client.trio_client import Client
from minibroker.config import ServerConfig
from minibroker.embedded import EmbeddedBroker, amqp_url, open_broker
from minibroker.server.app import BrokerServer
from minibroker.value_class import replace

_namespace_counter = itertools.count(1)


class ThreadedBroker:
    """A broker server running in its own thread with its own Trio run."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.clock = trio.testing.MockClock(rate=1.0)
        self.server = BrokerServer(config)
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="minibroker-server", daemon=True)
        #: A connection to the default namespace for ``drop_namespace``, opened on first use.
        self._admin: SyncClient | None = None

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    @property
    def url(self) -> str:
        url = self.server.url
        assert url is not None, "the threaded broker is not started"
        return url

    def url_for(self, namespace: str) -> str:
        """The URL of this broker with a namespace selected."""
        return f"{self.url}?namespace={namespace}"

    @property
    def http_url(self) -> str:
        """The HTTP face (started with ``http_port=0``); https with TLS."""
        assert self.server.http_port is not None, "start it with run_in_thread(http_port=0)"
        scheme = "https" if self.config.tls_cert else "http"
        return f"{scheme}://{self.config.host}:{self.server.http_port}"

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port`` for Kafka clients (start with ``kafka_port=0``)."""
        from minibroker.server.kafka_door import kafka_bootstrap

        return kafka_bootstrap(self.server)

    @property
    def sqs_url(self) -> str:
        """The SQS endpoint (started with ``sqs_port=0``), default namespace."""
        sqs = self.server.sqs
        assert sqs is not None and self.server.sqs_port, "start it with run_in_thread(sqs_port=0)"
        return f"{sqs.scheme}://{sqs.default_host}"

    @property
    def amqp_url(self) -> str:
        """The AMQP 0-9-1 URL (default vhost), when served with ``amqp_port``."""
        return amqp_url(self.config.host, self.server.front_end_ports["amqp"])

    def amqp_url_for(self, namespace: str) -> str:
        """The AMQP URL with ``namespace`` as the vhost."""
        return amqp_url(self.config.host, self.server.front_end_ports["amqp"], namespace)

    def start(self) -> None:
        """Start the server thread; returns once the broker accepts connections."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError("the threaded broker failed to start") from self._error

    def _main(self) -> None:
        async def run() -> None:
            self._token = trio.lowlevel.current_trio_token()
            await self.server.run(task_status=_Started(self._ready))

        try:
            trio.run(run, clock=self.clock)
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()

    def advance(self, seconds: float) -> None:
        """Jump the broker's clock forward; due timeouts fire at once."""

        def jump() -> None:
            self.clock.jump(seconds)
            # Fire what is due now, so the caller's next request already
            # sees the redelivery or expiry; then let the timer task re-arm.
            self.server.broker.on_time(trio.current_time())
            self.server.timers.poke_now()

        self._run_in_loop(jump)

    def _run_in_loop(self, fn: Any) -> Any:
        assert self._token is not None
        return trio.from_thread.run_sync(fn, trio_token=self._token)

    def drop_namespace(self, name: str) -> bool:
        """Delete namespace ``name`` with everything in it, through the
        ``namespace.drop`` operation (closing the connections still in it).
        ``minibroker_url`` does this after each test."""
        if self._admin is None:
            token = next(iter(self.config.tokens or {}), None)
            self._admin = connect_sync(self.url, token=token, client_name="minibroker-testing")
        return self._admin.drop_namespace(name)

    def stop(self) -> None:
        """Shut the server down gracefully and wait for its thread to end."""
        if self._admin is not None:
            self._admin.close()
        if self._token is not None and self._thread.is_alive():
            with suppress(trio.RunFinishedError):
                self._run_in_loop(self.server.shutdown)
        self._thread.join(timeout=30)


class _Started:
    """Adapts ``task_status.started`` to a threading.Event for the starting thread."""

    def __init__(self, ready: threading.Event) -> None:
        self._ready = ready

    def started(self, value: object = None) -> None:
        self._ready.set()


@contextmanager
def run_in_thread(config: ServerConfig | None = None, **overrides: Any) -> Iterator[ThreadedBroker]:
    """Serve a broker on a free port in a background thread for sync/asyncio code.

    with run_in_thread() as broker:
        with minibroker.connect_sync(broker.url) as mb: ...
    """
    base = config or ServerConfig(port=0)
    threaded = ThreadedBroker(replace(base, **overrides) if overrides else base)
    threaded.start()
    try:
        yield threaded
    finally:
        threaded.stop()


def fresh_namespace(prefix: str = "test") -> str:
    """A namespace name unique within this process."""
    return f"{prefix}-{next(_namespace_counter)}"


# ---------------------------------------------------------------- fixtures


@pytest.fixture
async def minibroker_broker(request: pytest.FixtureRequest) -> AsyncIterator[EmbeddedBroker]:
    """An in-process broker for this (Trio) test, memory storage, no socket."""
    running = sniffio.current_async_library()
    if running != "trio":  # an anyio test whose backend is not Trio
        _refuse_trio_fixture("minibroker_broker", request.node.name, running)
    async with open_broker() as broker:
        yield broker


@pytest.fixture
async def minibroker_client(minibroker_broker: EmbeddedBroker) -> AsyncIterator[Client]:
    """An in-process client connected to ``minibroker_broker``."""
    async with minibroker_broker.connect() as client:
        yield client


@pytest.fixture(scope="session")
def minibroker_server() -> Iterator[ThreadedBroker]:
    """One TCP broker for the whole test session, in a background thread."""
    with run_in_thread() as threaded:
        yield threaded


@pytest.fixture
def minibroker_namespace() -> str:
    """A fresh namespace name for this test."""
    return fresh_namespace()


#: ``_test_runner`` of a test that neither pytest-trio nor anyio runs.
NO_RUNNER = "none"
#: Fixtures that only a test running under Trio can use.
TRIO_FIXTURES = ("minibroker_broker", "minibroker_client")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A Trio fixture in a test that Trio does not run (asyncio, plain, or
    trio_mode forgotten) fails deep inside pytest-trio; say what to do."""
    requested = getattr(item, "fixturenames", ())
    wanted = [name for name in TRIO_FIXTURES if name in requested]
    if wanted and _asyncio_auto_mode(item.config):
        # pytest-asyncio's auto mode sets every async fixture up on asyncio,
        # a Trio test's too: open_broker then refused to run on asyncio with
        # advice meant for application code.
        pytest.fail(
            f"{wanted[-1]} is a Trio fixture, and pytest-asyncio's asyncio_mode = auto "
            "sets every async fixture up on asyncio, a @pytest.mark.trio test's too: "
            "in a suite with Trio tests use asyncio_mode = strict (pytest-asyncio's "
            "default) and mark the asyncio tests @pytest.mark.asyncio",
            pytrace=False,
        )
    runner = _test_runner(item) if wanted else "trio"
    if runner not in ("trio", None, NO_RUNNER):
        _refuse_trio_fixture(wanted[-1], item.name, runner)
    if runner == NO_RUNNER:
        pytest.fail(
            f"{wanted[-1]} is a Trio fixture but {item.name} does not run under Trio: set "
            "trio_mode = true (or mark it @pytest.mark.trio) for Trio tests; asyncio tests "
            "use minibroker_aio_client, blocking ones minibroker_url",
            pytrace=False,
        )
    # The other way round: trio_mode claims every ``async def`` test, marked
    # asyncio or not, while pytest-asyncio still sets its fixtures up on a
    # loop of its own, so the client's first call failed with "no running
    # event loop" from deep inside it.
    if "minibroker_aio_client" in requested and item.get_closest_marker("trio") is not None:
        pytest.fail(
            f"minibroker_aio_client is an asyncio fixture but {item.name} runs under Trio "
            "(trio_mode claims every async def test, @pytest.mark.asyncio ones too): Trio "
            "tests use minibroker_client; in a suite with both kinds, mark the Trio tests "
            "@pytest.mark.trio instead of setting trio_mode",
            pytrace=False,
        )


def _test_runner(item: pytest.Item) -> str | None:
    """The event loop that runs ``item``: "trio" for pytest-trio's (``trio``
    marker), the backend of anyio's (``anyio`` marker), ``NO_RUNNER`` for
    neither; None when only the test's ``anyio_backend`` fixture, not set up
    yet, can tell (``minibroker_broker`` checks then)."""
    if item.get_closest_marker("trio") is not None:
        return "trio"
    if item.get_closest_marker("anyio") is None:
        return NO_RUNNER
    callspec = getattr(item, "callspec", None)
    if callspec is None or "anyio_backend" not in callspec.params:
        return None
    backend = callspec.params["anyio_backend"]
    return str(backend[0] if isinstance(backend, tuple) else backend)


def _refuse_trio_fixture(fixture: str, test: str, running: str | None) -> NoReturn:
    """Fail ``test``, which runs under ``running`` (an anyio backend, or the
    library sniffio finds), for asking for Trio fixture ``fixture``."""
    pytest.fail(
        f"{fixture} is a Trio fixture but {test} runs under {running}: asyncio "
        "tests use minibroker_aio_client, blocking ones minibroker_url (or run the "
        "test on anyio's trio backend)",
        pytrace=False,
    )


def _asyncio_auto_mode(config: pytest.Config) -> bool:
    """Whether pytest-asyncio runs here in auto mode (``--asyncio-mode`` wins
    over the ``asyncio_mode`` ini setting, as in pytest-asyncio itself)."""
    if not config.pluginmanager.has_plugin("asyncio"):
        return False
    mode = config.getoption("asyncio_mode", None) or config.getini("asyncio_mode")
    return str(getattr(mode, "value", mode)) == "auto"


@pytest.fixture
def minibroker_url(minibroker_server: ThreadedBroker, minibroker_namespace: str) -> Iterator[str]:
    """URL of the session broker with this test's own namespace selected.

    After the test the namespace is dropped with everything in it, so a long
    session does not accumulate every test's queues and messages.
    """
    yield minibroker_server.url_for(minibroker_namespace)
    minibroker_server.drop_namespace(minibroker_namespace)


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - asyncio tests need pytest-asyncio anyway
    pass
else:

    @pytest_asyncio.fixture
    async def minibroker_aio_client(minibroker_url: str) -> AsyncIterator[AioClient]:
        """An asyncio client (``minibroker.aio``) in this test's own namespace of
        the session broker, which runs its Trio loop in a background thread."""
        async with aio_connect(minibroker_url) as client:
            yield client


@dataclass(frozen=True)
class KafkaBootstrap:
    """Where a Kafka client connects for one test, and the client id that
    selects the test's own namespace (docs/kafka.md, "Tests").

    A client id ``<namespace>/<name>`` picks the namespace, so topics and
    consumer groups of one test never meet another test's.
    """

    servers: str
    namespace: str

    def client_id(self, name: str = "client") -> str:
        return f"{self.namespace}/{name}"

    def confluent(self, **extra: Any) -> dict[str, Any]:
        """Config for confluent-kafka's Producer, Consumer and AdminClient."""
        return {"bootstrap.servers": self.servers, "client.id": self.client_id(), **extra}

    def kwargs(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for aiokafka's and kafka-python's clients."""
        return {"bootstrap_servers": self.servers, "client_id": self.client_id(), **extra}

    def __str__(self) -> str:
        return self.servers


@pytest.fixture(scope="session")
def minibroker_kafka_server() -> Iterator[ThreadedBroker]:
    """One broker with a Kafka port for the whole test session, in a thread."""
    with run_in_thread(kafka_port=0) as threaded:
        yield threaded


class SqsEndpoint:
    """An SQS endpoint for one test: its own namespace, visible in its queue URLs.

    ``url`` is the ``endpoint_url`` to give boto3 (or aiobotocore, or kombu):
    ``http://127.0.0.1:PORT/<namespace>``, so queues this test creates are
    ``http://127.0.0.1:PORT/<namespace>/<queue>`` and no other test sees them.
    Credentials are not checked; ``client_kwargs`` has dummy ones.
    """

    region = "us-east-1"

    def __init__(self, server: ThreadedBroker, namespace: str) -> None:
        self.server = server
        self.namespace = namespace
        self.url = f"{server.sqs_url}/{namespace}"

    @property
    def client_kwargs(self) -> dict[str, str]:
        return {
            "endpoint_url": self.url,
            "region_name": self.region,
            "aws_access_key_id": "minibroker",
            "aws_secret_access_key": "minibroker",
        }

    def client(self) -> Any:
        """A boto3 SQS client for this endpoint (boto3 must be installed)."""
        import boto3

        return boto3.client("sqs", **self.client_kwargs)

    def advance(self, seconds: float) -> None:
        """Jump the broker's clock: visibility timeouts, delays and retention fire."""
        self.server.advance(seconds)


@pytest.fixture(scope="session")
def minibroker_sqs_server() -> Iterator[ThreadedBroker]:
    """One broker with an SQS endpoint for the whole session, in a background thread."""
    with run_in_thread(sqs_port=0) as threaded:
        yield threaded


@pytest.fixture
def minibroker_kafka_bootstrap(
    minibroker_kafka_server: ThreadedBroker, minibroker_namespace: str
) -> Iterator[KafkaBootstrap]:
    """The session broker's Kafka address, with this test's own namespace
    (dropped after the test, like ``minibroker_url``'s)."""
    yield KafkaBootstrap(minibroker_kafka_server.kafka_bootstrap, minibroker_namespace)
    minibroker_kafka_server.drop_namespace(minibroker_namespace)


@pytest.fixture
def minibroker_sqs_endpoint(
    minibroker_sqs_server: ThreadedBroker, minibroker_namespace: str
) -> Iterator[SqsEndpoint]:
    """The session's SQS endpoint, in this test's own namespace (dropped after
    the test, as ``minibroker_url`` does)."""
    yield SqsEndpoint(minibroker_sqs_server, minibroker_namespace)
    minibroker_sqs_server.drop_namespace(minibroker_namespace)


@pytest.fixture(scope="session")
def minibroker_amqp_server() -> Iterator[ThreadedBroker]:
    """One broker serving AMQP 0-9-1 (and the native port) for the whole test session."""
    with run_in_thread(amqp_port=0) as threaded:
        yield threaded


@pytest.fixture
def minibroker_amqp_url(
    minibroker_amqp_server: ThreadedBroker, minibroker_namespace: str
) -> Iterator[str]:
    """``amqp://`` URL of the session's AMQP broker, with this test's own vhost (namespace),
    dropped with everything in it after the test."""
    yield minibroker_amqp_server.amqp_url_for(minibroker_namespace)
    minibroker_amqp_server.drop_namespace(minibroker_namespace)
