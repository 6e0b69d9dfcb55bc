"""What AMQP keeps per namespace beside the core's state: one ``Vhost`` per namespace.

The messages, queues and topic bindings are the core's. What AMQP adds, and
all connections of a vhost share, lives here:

* the exchanges (``exchanges.py``) with their direct/fanout/headers bindings;
* each queue's AMQP declaration (exclusive owner, auto_delete, arguments) for
  RabbitMQ's rules: 405 for another connection's exclusive queue, 406 for an
  inequivalent redeclaration, deletion with the owner, after the last
  consumer, or after ``x-expires`` unused;
* the consumers of each queue (``consumers.py``, push over the pull queue),
  with RabbitMQ's exclusive-consumer and auto_delete rules applied here;
* dead-lettering through exchanges (``dead_letters.py``);
* the direct reply-to channels (``amq.rabbitmq.reply-to``).

It is attached to the namespace (``Namespace.extension``), so it hears of
disconnects and is destroyed with the namespace like any core model.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Final, Protocol

from minibroker.amqp import arguments as queue_arguments
from minibroker.amqp.consumers import Consumer, Consumers
from minibroker.amqp.dead_letters import dead_letter
from minibroker.amqp.errors import (
    ACCESS_REFUSED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    SoftError,
)
from minibroker.amqp.exchanges import (
    DEFAULT,
    DIRECT,
    PREDECLARED,
    TOPIC,
    Exchange,
    topic_name,
)
from minibroker.amqp.messages import CoreMessage
from minibroker.core.peer import Peer
from minibroker.core.queue_message import Message
from minibroker.core.queues import Queue
from minibroker.core.timers import Timer
from minibroker.errors import BrokerError, InvalidName, Overflow

if TYPE_CHECKING:
    from minibroker.core.namespace import Namespace

#: The key of the vhost in ``Namespace.extension``.
EXTENSION_KEY: Final = "amqp"


class ReplyTarget(Protocol):
    """A channel consuming ``amq.rabbitmq.reply-to``."""

    def deliver_reply(
        self, routing_key: str, properties: bytes, exchange: str, body: bytes
    ) -> None: ...


@dataclass(eq=False)
class QueueDeclaration:
    durable: bool
    exclusive_owner: int | None
    auto_delete: bool
    arguments: dict[str, object]
    expires: float | None
    had_consumer: bool = False
    last_used: float = 0.0
    expiry: Timer | None = field(default=None, repr=False)


class Vhost:
    """The AMQP state of one namespace."""

    def __init__(self, namespace: Namespace) -> None:
        self.namespace = namespace
        self.name = namespace.name or "/"
        self.exchanges: dict[str, Exchange] = {
            name: Exchange(name, type_) for name, type_ in PREDECLARED.items()
        }
        self.exchanges[DEFAULT] = Exchange(DEFAULT, DIRECT)
        self.declarations: dict[str, QueueDeclaration] = {}
        self.consumers = Consumers(namespace)
        self.reply_targets: dict[str, tuple[int, ReplyTarget]] = {}
        namespace.queues.on_delete.append(self._queue_deleted)

    # ------------------------------------------------------------- exchanges

    def exchange(self, name: str) -> Exchange:
        found = self.exchanges.get(name)
        if found is None:
            raise SoftError(NOT_FOUND, f"no exchange '{name}' in vhost '{self.name}'")
        return found

    def declare_exchange(
        self,
        name: str,
        type_: str,
        *,
        passive: bool,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: dict[str, object],
    ) -> None:
        if name == DEFAULT:
            raise SoftError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        existing = self.exchanges.get(name)
        if passive:
            self.exchange(name)
            return
        if existing is None:
            if name.startswith("amq."):
                raise SoftError(
                    ACCESS_REFUSED, f"exchange name '{name}' contains reserved prefix 'amq.*'"
                )
            self.exchanges[name] = Exchange(name, type_, durable, auto_delete, internal, arguments)
            return
        if name in PREDECLARED:
            differs = "type" if type_ != existing.type else None
        else:
            differs = existing.same_declaration(type_, durable, auto_delete, internal, arguments)
        if differs is not None:
            raise SoftError(
                PRECONDITION_FAILED,
                f"inequivalent arg '{differs}' for exchange '{name}' in vhost '{self.name}'",
            )

    def delete_exchange(self, name: str, *, if_unused: bool, now: float) -> None:
        if name == DEFAULT or name.startswith("amq."):
            raise SoftError(ACCESS_REFUSED, f"operation not permitted on exchange '{name}'")
        exchange = self.exchanges.get(name)
        if exchange is None:
            return  # deleting a missing exchange succeeds (RabbitMQ 3.x)
        bound = (
            self._topic_bindings(exchange) if exchange.type == TOPIC else list(exchange.bindings)
        )
        if if_unused and bound:
            raise SoftError(PRECONDITION_FAILED, f"exchange '{name}' in use")
        if exchange.type == TOPIC:
            for queue, pattern in bound:
                self.namespace.topics.unbind(queue, pattern)
        del self.exchanges[name]

    def _topic_bindings(self, exchange: Exchange) -> list[tuple[str, str]]:
        """The core bindings that belong to a topic exchange (by its topic prefix)."""
        prefix = exchange.name + "."
        return [
            (queue, pattern)
            for queue, pattern in self.namespace.topics.bindings()
            if pattern == exchange.name or pattern.startswith(prefix)
        ]

    def bind(self, queue: str, exchange_name: str, key: str, arguments: dict[str, object]) -> None:
        if exchange_name == DEFAULT:
            raise SoftError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        exchange = self.exchange(exchange_name)
        self.queue(queue)
        if exchange.type == TOPIC:
            try:
                self.namespace.topics.bind(queue, topic_name(exchange_name, key))
            except InvalidName as exc:
                raise SoftError(PRECONDITION_FAILED, exc.message) from None
        else:
            exchange.bind(queue, key, arguments)

    def unbind(self, queue: str, exchange_name: str, key: str) -> None:
        if exchange_name == DEFAULT:
            raise SoftError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        exchange = self.exchanges.get(exchange_name)
        if exchange is None or queue not in self.namespace.queues:
            return  # unbinding is idempotent, as in RabbitMQ 3.x
        if exchange.type == TOPIC:
            with contextlib.suppress(InvalidName):  # such a key was never bound
                self.namespace.topics.unbind(queue, topic_name(exchange_name, key))
        else:
            exchange.unbind(queue, key)
        self._maybe_auto_delete_exchange(exchange)

    def _maybe_auto_delete_exchange(self, exchange: Exchange) -> None:
        if not exchange.auto_delete or exchange.name not in self.exchanges:
            return
        bound = self._topic_bindings(exchange) if exchange.type == TOPIC else exchange.bindings
        if not bound:
            del self.exchanges[exchange.name]

    # ----------------------------------------------------------------- route

    def route(
        self,
        exchange: Exchange,
        routing_key: str,
        message: CoreMessage,
        header_table: Mapping[str, object] | None,
        now: float,
        ttl: float | None = None,
    ) -> tuple[int, int]:
        """Deliver ``message``; returns (queues that took it, queues that refused it when full).

        A native topic subscriber reached through a topic exchange counts as
        a queue that took it (the message did go somewhere).
        """
        if exchange.type == TOPIC:
            try:
                result = self.namespace.topics.publish(
                    topic_name(exchange.name, routing_key), [message], now, ttl
                )
            except InvalidName:
                return 0, 0  # no binding can match a key the core cannot name
            return result.queues + result.subscriptions, 0
        if exchange.name == DEFAULT:
            targets: Sequence[str] = (routing_key,)
        else:
            targets = exchange.route(routing_key, header_table)
        taken = refused = 0
        queues = self.namespace.queues
        for name in targets:
            queue = queues.find(name)
            if queue is None:
                continue
            try:
                queue.put([message], now, ttl=ttl)
            except Overflow:
                refused += 1
                continue
            taken += 1
        return taken, refused

    # --------------------------------------------------------------- queues

    def queue(self, name: str) -> Queue:
        found = self.namespace.queues.find(name)
        if found is None:
            raise SoftError(NOT_FOUND, f"no queue '{name}' in vhost '{self.name}'")
        return found

    def check_owner(self, name: str, conn_id: int) -> None:
        """405 when ``name`` is another connection's exclusive queue."""
        declaration = self.declarations.get(name)
        if declaration is not None and declaration.exclusive_owner not in (None, conn_id):
            raise SoftError(
                RESOURCE_LOCKED,
                f"cannot obtain exclusive access to locked queue '{name}' in vhost "
                f"'{self.name}'. It could be originally declared on another connection "
                "or the exclusive property value does not match that of the original "
                "declaration.",
            )

    def declare_queue(
        self,
        conn_id: int,
        name: str,
        *,
        passive: bool,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: dict[str, object],
        now: float,
    ) -> tuple[str, int, int]:
        """Create or check a queue: (name, ready messages, consumers)."""
        if passive:
            queue = self.queue(name)
            self.check_owner(name, conn_id)
            return name, queue.ready_count, self.consumers.count(name)
        if not name:
            name = "amq.gen-" + secrets.token_urlsafe(16)
        elif name.startswith("amq."):
            raise SoftError(ACCESS_REFUSED, f"queue name '{name}' contains reserved prefix 'amq.*'")
        parsed = queue_arguments.parse(durable, arguments)
        queues = self.namespace.queues
        existing = queues.find(name)
        declaration = self.declarations.get(name)
        if existing is not None:
            self.check_owner(name, conn_id)
            if declaration is not None:
                self._check_equivalent(
                    name, declaration, durable, exclusive, auto_delete, arguments
                )
        try:
            queues.declare(name, parsed.options, now)
        except BrokerError as exc:  # Conflict (other options), InvalidName, BadRequest
            raise SoftError(PRECONDITION_FAILED, exc.message) from None
        if declaration is None:
            declaration = self.declarations[name] = QueueDeclaration(
                durable,
                conn_id if exclusive else None,
                auto_delete,
                dict(arguments),
                parsed.expires,
            )
        self._touch(name, declaration, now)
        queue = queues.get(name)
        if parsed.dead_letter is None:
            queue.dead_letter_route = None
        else:
            exchange, key = parsed.dead_letter
            queue.dead_letter_route = partial(self._dead_letter, name, exchange, key)
        return name, queue.ready_count, self.consumers.count(name)

    def _dead_letter(
        self,
        source: str,
        exchange_name: str,
        key: str | None,
        messages: list[Message],
        reason: str,
        now: float,
    ) -> bool:
        """``source``'s dead-letter route (its x-dead-letter-exchange), for the core."""
        exchange = self.exchanges.get(exchange_name)
        if exchange is None:
            return False
        return dead_letter(self._route_taken, exchange, key, source, messages, reason, now)

    def _route_taken(
        self,
        exchange: Exchange,
        routing_key: str,
        message: CoreMessage,
        headers: dict[str, object],
        now: float,
    ) -> int:
        return self.route(exchange, routing_key, message, headers, now)[0]

    def _check_equivalent(
        self,
        name: str,
        declaration: QueueDeclaration,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: dict[str, object],
    ) -> None:
        for label, ours, theirs in (
            ("durable", declaration.durable, durable),
            ("exclusive", declaration.exclusive_owner is not None, exclusive),
            ("auto_delete", declaration.auto_delete, auto_delete),
        ):
            if ours != theirs:
                raise SoftError(
                    PRECONDITION_FAILED,
                    f"inequivalent arg '{label}' for queue '{name}' in vhost '{self.name}': "
                    f"received '{str(theirs).lower()}' but current is '{str(ours).lower()}'",
                )
        for key in sorted(set(declaration.arguments) | set(arguments)):
            if declaration.arguments.get(key) != arguments.get(key):
                raise SoftError(
                    PRECONDITION_FAILED,
                    f"inequivalent arg '{key}' for queue '{name}' in vhost '{self.name}': "
                    f"received {arguments.get(key)!r} but current is "
                    f"{declaration.arguments.get(key)!r}",
                )

    def delete_queue(
        self, conn_id: int, name: str, *, if_unused: bool, if_empty: bool, now: float
    ) -> int:
        queue = self.namespace.queues.find(name)
        if queue is None:
            return 0
        self.check_owner(name, conn_id)
        if if_unused and self.consumers.count(name):
            raise SoftError(PRECONDITION_FAILED, f"queue '{name}' in vhost '{self.name}' in use")
        if if_empty and queue.ready_count:
            raise SoftError(
                PRECONDITION_FAILED, f"queue '{name}' in vhost '{self.name}' is not empty"
            )
        ready = queue.ready_count
        self.namespace.queues.delete(name, now)
        return ready

    def _queue_deleted(self, name: str) -> None:
        """The core deleted a queue (through any door): forget it, cancel its consumers."""
        declaration = self.declarations.pop(name, None)
        if declaration is not None and declaration.expiry is not None:
            declaration.expiry.cancel()
        for exchange in self.exchanges.values():
            if exchange.bindings:
                exchange.drop_queue(name)
        for consumer in self.consumers.drop_queue(name):
            consumer.cancelled_by_server(0.0)

    # ------------------------------------------------------------- x-expires

    def touch(self, name: str, now: float) -> None:
        """The queue was used (declared, read): restart its x-expires countdown."""
        declaration = self.declarations.get(name)
        if declaration is not None:
            self._touch(name, declaration, now)

    def _touch(self, name: str, declaration: QueueDeclaration, now: float) -> None:
        declaration.last_used = now
        if declaration.expires is None or self.consumers.count(name):
            return
        if declaration.expiry is None or declaration.expiry.cancelled:
            timers = self.namespace.broker.timers
            declaration.expiry = timers.call_at(
                now + declaration.expires, lambda at: self._expiry_due(name, declaration, at)
            )

    def _expiry_due(self, name: str, declaration: QueueDeclaration, now: float) -> None:
        declaration.expiry = None
        if self.declarations.get(name) is not declaration or self.consumers.count(name):
            return
        assert declaration.expires is not None
        due = declaration.last_used + declaration.expires
        if due > now:
            declaration.expiry = self.namespace.broker.timers.call_at(
                due, lambda at: self._expiry_due(name, declaration, at)
            )
            return
        if name in self.namespace.queues:
            self.namespace.queues.delete(name, now)

    # ------------------------------------------------------------ consumers

    def add_consumer(self, consumer: Consumer, conn_id: int) -> None:
        name = consumer.queue
        queue = self.queue(name)
        self.check_owner(name, conn_id)
        present = self.consumers.of(name)
        if present and (consumer.exclusive or present[0].exclusive):
            raise SoftError(
                ACCESS_REFUSED, f"queue '{name}' in vhost '{self.name}' in exclusive use"
            )
        self.consumers.add(consumer, queue)
        declaration = self.declarations.get(name)
        if declaration is not None:
            declaration.had_consumer = True
            if declaration.expiry is not None:
                declaration.expiry.cancel()
                declaration.expiry = None

    def remove_consumer(self, consumer: Consumer, now: float) -> None:
        """Forget a consumer; its queue's last one going may delete it (auto_delete)
        or start its x-expires countdown."""
        name = consumer.queue
        if not self.consumers.remove(consumer):
            return
        declaration = self.declarations.get(name)
        if declaration is None:
            return
        if declaration.auto_delete and declaration.had_consumer:
            if name in self.namespace.queues:
                self.namespace.queues.delete(name, now)
            return
        self._touch(name, declaration, now)

    # ------------------------------------------------------- direct reply-to

    def add_reply_target(self, conn_id: int, target: ReplyTarget) -> str:
        token = secrets.token_urlsafe(18)
        self.reply_targets[token] = (conn_id, target)
        return token

    def remove_reply_target(self, token: str) -> None:
        self.reply_targets.pop(token, None)

    # ---------------------------------------------------------------- Model

    def disconnect(self, peer: Peer, now: float) -> None:
        """A connection ended: drop its consumers, reply targets and exclusive queues."""
        conn_id = peer.conn_id
        for consumer in self.consumers.of_connection(conn_id):
            self.remove_consumer(consumer, now)
        for token in [t for t, (owner, _) in self.reply_targets.items() if owner == conn_id]:
            del self.reply_targets[token]
        owned = [n for n, d in self.declarations.items() if d.exclusive_owner == conn_id]
        for name in owned:
            if name in self.namespace.queues:
                self.namespace.queues.delete(name, now)

    def sync(self) -> None:
        return None

    def close(self) -> None:
        for declaration in self.declarations.values():
            if declaration.expiry is not None:
                declaration.expiry.cancel()

    def destroy(self) -> None:
        self.close()
        self.consumers.clear()
        self.reply_targets.clear()


def vhost_of(namespace: Namespace) -> Vhost:
    """The AMQP state of ``namespace``, created on first use."""
    return namespace.extension(EXTENSION_KEY, Vhost)
