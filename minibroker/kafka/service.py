"""The Kafka front end's state shared by all its connections: settings, producers, groups.

One :class:`KafkaService` serves one broker. Per namespace it keeps a
:class:`KafkaNamespace`: the topics (a view of the namespace's logs), the
consumer-group coordinator and the commit metadata strings. Committed
offsets themselves live in the logs' consumer-group offsets, so
``minibroker log stats`` shows a Kafka group's lag like any other group's.

How a Kafka client picks a namespace: by its ``client.id``. A client id of
the form ``<namespace>/<anything>`` selects that namespace, any other the
default one. Every Kafka client lets you set ``client.id`` and sends it with
every request, without a broker-side handshake, and it leaves topic names
untouched, so the application under test uses its real topic names. (A SASL
login says who a client is, not where it works: principals and namespaces
are independent, as on the msgpack port.) The test fixture
``minibroker_kafka_bootstrap`` hands out such ids (docs/kafka.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from minibroker.access.auth import Authenticator, Principal
from minibroker.core.broker import Broker
from minibroker.core.namespace import Namespace
from minibroker.core.peer import Peer
from minibroker.kafka.groups import GroupCoordinator
from minibroker.kafka.producers import Producers
from minibroker.kafka.session import KafkaSession
from minibroker.kafka.topics import TopicLogs

#: Separates the namespace from the rest of a client id.
NAMESPACE_SEPARATOR = "/"


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """How the Kafka front end behaves (``minibroker serve --kafka-*`` flags)."""

    #: Host advertised in Metadata and FindCoordinator answers: clients
    #: reconnect to it. 127.0.0.1 rather than localhost: librdkafka may
    #: resolve localhost to ::1, where nothing listens.
    advertised_host: str = "127.0.0.1"
    #: Create a topic on first use (Metadata with auto-create, Produce), as
    #: Kafka's ``auto.create.topics.enable`` does by default.
    auto_create_topics: bool = True
    #: Partitions of an auto-created topic (Kafka's ``num.partitions``).
    default_partitions: int = 1
    #: Largest request accepted (Kafka's ``socket.request.max.bytes``).
    max_request_bytes: int = 100 * 1024 * 1024


@dataclass(slots=True)
class KafkaNamespace:
    """The Kafka view of one minibroker namespace."""

    core: Namespace
    topics: TopicLogs
    groups: GroupCoordinator
    #: (group, log) -> the metadata string of the last commit (kept in memory).
    commit_metadata: dict[tuple[str, str], str] = field(default_factory=dict)


class KafkaService:
    """What every Kafka connection of one broker shares."""

    def __init__(
        self,
        broker: Broker,
        settings: KafkaSettings,
        advertised_port: Callable[[], int],
        authenticator: Authenticator | None = None,
    ) -> None:
        self.broker = broker
        self.settings = settings
        #: The server's tokens and permissions (``access/``), shared with
        #: every other port; without one, everyone may do everything.
        self.authenticator = authenticator or Authenticator()
        self._advertised_port = advertised_port
        self.producers = Producers()
        self._namespaces: dict[str, KafkaNamespace] = {}

    @property
    def max_request_bytes(self) -> int:
        return self.settings.max_request_bytes

    def anonymous_principal(self) -> Principal | None:
        """Who a new connection is before any login: nobody (None) when the
        server has tokens, so it must log in with SASL; else ``anonymous``,
        with that principal's grants when a permissions file is in force."""
        if self.authenticator.enabled:
            return None
        return self.authenticator.authenticate(None)

    @property
    def port(self) -> int:
        """The port clients are told to connect to (the one the front end bound)."""
        return self._advertised_port()

    def namespace_for(self, client_id: str | None, peer: Peer) -> KafkaNamespace:
        """The namespace a client id selects (see the module docstring), joined
        by ``peer``: dropping the namespace closes the connection."""
        name = ""
        if client_id and NAMESPACE_SEPARATOR in client_id:
            name = client_id.split(NAMESPACE_SEPARATOR, 1)[0]
        core = self.broker.join(name, peer)  # raises InvalidName for a bad one
        found = self._namespaces.get(name)
        if found is None or found.core is not core:
            self._forget_dropped()
            groups = GroupCoordinator(
                self.broker.timers, self.broker.config.limits.max_groups_per_namespace
            )
            found = KafkaNamespace(core, TopicLogs(core.logs), groups)
            self._namespaces[name] = found
        return found

    def _forget_dropped(self) -> None:
        """Let go of the Kafka state of namespaces that were dropped (the test
        fixtures drop one per test), so it does not pile up."""
        live = self.broker.namespaces
        for name, known in list(self._namespaces.items()):
            if live.get(name) is not known.core:
                del self._namespaces[name]

    def make_session(self, broker: Broker, conn_id: int, peer_name: str) -> KafkaSession:
        """A session for a new connection (the shell's ``SessionFactory``)."""
        return KafkaSession(self, broker, conn_id, peer_name)
