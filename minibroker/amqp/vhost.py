"""What AMQP keeps per namespace beside the core's state: one ``Vhost`` per namespace.

The messages, queues and topic bindings are the core's. What AMQP adds, and
all connections of a vhost share, lives here:

* the exchanges (``exchanges.py``) with their direct/fanout/headers bindings
  and their exchange-to-exchange bindings;
* each queue's AMQP declaration (exclusive owner, auto_delete, arguments) for
  RabbitMQ's rules: 405 for another connection's exclusive queue, 406 for an
  inequivalent redeclaration, deletion with the owner, after the last
  consumer, or after ``x-expires`` unused;
* the consumers of each queue (``consumers.py``, push over the pull queue),
  with RabbitMQ's exclusive-consumer and auto_delete rules applied here;
* dead-lettering through exchanges (``dead_letters.py``);
* the direct reply-to channels (``amq.rabbitmq.reply-to``).

It is attached to the namespace (``Namespace.extension``), so it hears of
disconnects and is destroyed with the namespace like any core model. What of
it is durable (durable exchanges, bindings between durable objects, durable
queues' declarations) is written to the namespace's state journal as it
changes (``durable.py``) and read back when the vhost is made, so it
survives a restart with ``--data-dir`` as in RabbitMQ.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Final, Protocol

from minibroker.amqp import arguments as queue_arguments
from minibroker.amqp.consumers import Consumer, Consumers
from minibroker.amqp.dead_letters import dead_letter
from minibroker.amqp.durable import (
    EXCHANGE,
    JOURNAL,
    QUEUE,
    SavedBinding,
    SavedExchange,
    SavedQueue,
    VhostJournal,
    cannot_write,
)
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
    HEADERS,
    PREDECLARED,
    TOPIC,
    Exchange,
    topic_name,
    x_match_problem,
)
from minibroker.amqp.messages import CoreMessage
from minibroker.amqp.permissions import ADMIN, READ, WRITE, Access
from minibroker.core.peer import Peer
from minibroker.core.queue_message import Message
from minibroker.core.queues import Queue
from minibroker.core.timers import Timer
from minibroker.core.topics import NoRoom
from minibroker.errors import (
    BrokerError,
    InvalidName,
    LimitExceeded,
    Overflow,
    StorageError,
    StorageFull,
)

if TYPE_CHECKING:
    from minibroker.core.namespace import Namespace

log = logging.getLogger("minibroker.amqp")

#: The key of the vhost in ``Namespace.extension``.
EXTENSION_KEY: Final = "amqp"


class ReplyTarget(Protocol):
    """A channel consuming ``amq.rabbitmq.reply-to``."""

    def deliver_reply(
        self, routing_key: str, properties: bytes, exchange: str, body: bytes
    ) -> bool:
        """Send the reply; False if it was dropped (see ``Channel.deliver_reply``)."""
        ...


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
        namespace.topics.other_bindings.append(self.binding_count)
        self.journal = VhostJournal(namespace.state_journal(JOURNAL), namespace.broker.clock)
        self._recover()

    # -------------------------------------------------------------- recovery

    def _recover(self) -> None:
        """Bring back what the journal kept: exchanges, queue declarations, bindings.

        Entries whose objects are gone (a durable queue deleted through the
        native door while the vhost was not loaded) are dropped. As in
        RabbitMQ, an exclusive queue does not outlive its connection, so one
        found at start-up is deleted, and the x-expires countdowns start again.
        """
        saved = self.journal.load()
        queues = self.namespace.queues
        # The shell's monotonic clock, as the core's timers count it (see Clock).
        now = time.time() - self.namespace.broker.clock.epoch_offset
        for ex in saved.exchanges:
            self.exchanges.setdefault(
                ex.name, Exchange(ex.name, ex.type, True, ex.auto_delete, ex.internal, ex.arguments)
            )
        for q in saved.queues:
            queue = queues.find(q.name)
            if queue is None or not queue.durable:
                self.journal.forget_queue(q.name)
            elif q.exclusive:
                queues.delete(q.name, now)  # _queue_deleted forgets it
            else:
                self._recover_queue(q, now)
        for b in saved.bindings:
            source = self.exchanges.get(b.source)
            if b.kind == QUEUE:
                if source is None or b.destination not in queues:
                    self.journal.forget_binding(b.source, b.kind, b.destination, b.key)
                else:
                    source.bind(b.destination, b.key, b.arguments)
            elif source is None or b.destination not in self.exchanges:
                self.journal.forget_binding(b.source, b.kind, b.destination, b.key)
            else:
                source.bind_exchange(b.destination, b.key, b.arguments)

    def _recover_queue(self, saved: SavedQueue, now: float) -> None:
        try:
            parsed = queue_arguments.parse(True, saved.arguments)
        except SoftError as exc:
            log.error("queue %r in vhost %r: %s (arguments ignored)", saved.name, self.name, exc)
            parsed = None
        declaration = self.declarations[saved.name] = QueueDeclaration(
            True,
            None,
            saved.auto_delete,
            dict(saved.arguments),
            None if parsed is None else parsed.expires,
        )
        if parsed is not None:
            self._set_dead_letter_route(saved.name, parsed.dead_letter)
        self._touch(saved.name, declaration, now)

    # ------------------------------------------------------------- exchanges

    def binding_count(self) -> int:
        """Bindings kept here rather than in the core's topic trie (direct, fanout
        and headers exchanges, and exchange-to-exchange): they count against
        ``max_bindings_per_namespace`` with the trie's. Counted when a binding
        is made, which is rare next to publishing."""
        return sum(len(ex.bindings) + len(ex.exchange_bindings) for ex in self.exchanges.values())

    def _check_binding_room(self, action: str) -> None:
        """406, as RabbitMQ words a reached limit, when the namespace is full of bindings."""
        try:
            self.namespace.topics.check_binding_room(action)
        except LimitExceeded as exc:
            raise SoftError(PRECONDITION_FAILED, self._limit_text(action, "binding", exc)) from None

    def _limit_text(self, action: str, what: str, exc: LimitExceeded) -> str:
        """In RabbitMQ's words, e.g. "cannot declare queue 'q': queue limit in vhost '/'
        (10) is reached", or "in cluster" for the broker-wide cap."""
        where = "in cluster" if exc.broker_wide else f"in vhost '{self.name}'"
        return f"{action}: {what} limit {where} ({exc.details['limit']}) is reached"

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
            limit = self.namespace.broker.config.limits.max_exchanges_per_namespace
            if len(self.exchanges) >= limit:
                raise SoftError(
                    PRECONDITION_FAILED,
                    f"cannot declare exchange '{name}': exchange limit in vhost "
                    f"'{self.name}' ({limit}) is reached",
                )
            if durable:
                self.journal.save_exchange(
                    SavedExchange(name, type_, auto_delete, internal, arguments)
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
        if existing.durable:
            self.journal.report_unsynced()  # declared only once it is on disk

    def delete_exchange(self, name: str, *, if_unused: bool, now: float) -> None:
        if name == DEFAULT:
            raise SoftError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        if name.startswith("amq."):
            raise SoftError(
                ACCESS_REFUSED,
                f"deletion of system exchange '{name}' in vhost '{self.name}' not allowed",
            )
        exchange = self.exchanges.get(name)
        if exchange is None:
            return  # deleting a missing exchange succeeds (RabbitMQ 3.x)
        bound = (
            self._topic_bindings(exchange) if exchange.type == TOPIC else list(exchange.bindings)
        )
        if if_unused and (bound or exchange.exchange_bindings):
            raise SoftError(PRECONDITION_FAILED, f"exchange '{name}' in use")
        self._remove_exchange(exchange)

    def _remove_exchange(self, exchange: Exchange) -> None:
        """Delete an exchange with its bindings, both ways, on disk too."""
        name = exchange.name
        journal = self.journal
        if exchange.type == TOPIC:
            for queue, pattern in self._topic_bindings(exchange):
                self.namespace.topics.unbind(queue, pattern)
        for queue, key in exchange.bindings:
            journal.forget_binding(name, QUEUE, queue, key)
        for destination, key in exchange.exchange_bindings:
            journal.forget_binding(name, EXCHANGE, destination, key)
        del self.exchanges[name]
        journal.forget_exchange(name)
        for source in list(self.exchanges.values()):
            if source.exchange_bindings:
                for key in source.drop_exchange(name):
                    journal.forget_binding(source.name, EXCHANGE, name, key)
                self._maybe_auto_delete_exchange(source)

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
        target = self.queue(queue)
        _check_binding_arguments(exchange, arguments)
        if exchange.type == TOPIC:
            try:
                self.namespace.topics.bind(queue, topic_name(exchange_name, key))
            except InvalidName as exc:
                raise SoftError(PRECONDITION_FAILED, exc.message) from None
            except LimitExceeded as exc:
                action = f"cannot bind queue '{queue}' to exchange '{exchange_name}'"
                raise SoftError(
                    PRECONDITION_FAILED, self._limit_text(action, "binding", exc)
                ) from None
            except (StorageFull, StorageError) as exc:  # a durable queue's binding
                raise cannot_write(exc) from None
        else:
            if (queue, key) not in exchange.bindings:
                self._check_binding_room(
                    f"cannot bind queue '{queue}' to exchange '{exchange_name}'"
                )
            if exchange.durable and target.durable:
                self.journal.save_binding(SavedBinding(exchange_name, QUEUE, queue, key, arguments))
            exchange.bind(queue, key, arguments)

    def unbind(self, queue: str, exchange_name: str, key: str) -> None:
        if exchange_name == DEFAULT:
            raise SoftError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        exchange = self.exchanges.get(exchange_name)
        if exchange is None or queue not in self.namespace.queues:
            return  # unbinding is idempotent, as in RabbitMQ 3.x
        if exchange.type == TOPIC:
            try:
                self.namespace.topics.unbind(queue, topic_name(exchange_name, key))
            except InvalidName:  # such a key was never bound
                pass
            except (StorageFull, StorageError) as exc:
                raise cannot_write(exc) from None
        elif exchange.unbind(queue, key):
            self.journal.forget_binding(exchange_name, QUEUE, queue, key)
        self._maybe_auto_delete_exchange(exchange)

    def bind_exchange(
        self, destination: str, source: str, key: str, arguments: dict[str, object]
    ) -> None:
        """Exchange.Bind: messages routed by ``source`` with ``key`` go on to ``destination``."""
        if DEFAULT in (destination, source):
            raise SoftError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        target = self.exchange(destination)
        origin = self.exchange(source)
        _check_binding_arguments(origin, arguments)
        if (destination, key) not in origin.exchange_bindings:
            self._check_binding_room(f"cannot bind exchange '{destination}' to '{source}'")
        if origin.durable and target.durable:
            self.journal.save_binding(SavedBinding(source, EXCHANGE, destination, key, arguments))
        origin.bind_exchange(destination, key, arguments)

    def unbind_exchange(self, destination: str, source: str, key: str) -> None:
        if DEFAULT in (destination, source):
            raise SoftError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        origin = self.exchanges.get(source)
        if origin is None or destination not in self.exchanges:
            return  # idempotent, as Queue.Unbind
        if origin.unbind_exchange(destination, key):
            self.journal.forget_binding(source, EXCHANGE, destination, key)
        self._maybe_auto_delete_exchange(origin)

    def _maybe_auto_delete_exchange(self, exchange: Exchange) -> None:
        if not exchange.auto_delete or exchange.name not in self.exchanges:
            return
        bound = self._topic_bindings(exchange) if exchange.type == TOPIC else exchange.bindings
        if not bound and not exchange.exchange_bindings:
            self._remove_exchange(exchange)

    # ----------------------------------------------------------------- route

    def route(
        self,
        exchange: Exchange,
        routing_key: str,
        message: CoreMessage,
        header_table: Mapping[str, object] | None,
        now: float,
        ttl: float | None = None,
        priority: int | None = None,
        also: Sequence[str] = (),
        no_room: list[NoRoom] | None = None,
    ) -> tuple[int, int]:
        """Deliver ``message``; returns (queues that took it, queues that refused it when full).

        ``ttl`` and ``priority`` are the message's ``expiration`` and ``priority``;
        ``also``: the routing keys of its ``CC`` and ``BCC`` headers (sender-selected
        distribution), each queue any key reaches taking it once.

        A native topic subscriber reached through a topic exchange counts as
        a queue that took it (the message did go somewhere).

        A queue the full disk refuses raises StorageFull (the queues routed
        before it keep the message), unless ``no_room`` is a list: the queue
        and its copy are added to it and routing goes on, so every queue that
        can take the message has it, and ``put_again`` can give it to the
        others alone later (``minibroker/amqp/disk_room.py``).
        """
        if also:
            keys = list(dict.fromkeys((routing_key, *also)))
            if len(keys) > 1:
                return self._route_keys(
                    exchange, keys, message, header_table, now, ttl, priority, no_room
                )
        if exchange.name == DEFAULT:  # never bound to other exchanges (403)
            queue = self.namespace.queues.find(routing_key)
            if queue is None:
                return 0, 0
            try:
                # 0: a dead letter the core barred (a dead-letter cycle).
                taken = queue.put([message], now, ttl=ttl, priority=priority)
            except Overflow:
                return 0, 1
            except StorageFull as exc:
                if no_room is None:
                    raise
                no_room.append(NoRoom(routing_key, [message], exc))
                return 0, 0
            return taken, 0
        if exchange.exchange_bindings:
            return self._route_keys(
                exchange, [routing_key], message, header_table, now, ttl, priority, no_room
            )
        if exchange.type == TOPIC:
            return self._publish_topic(exchange, routing_key, message, now, ttl, priority, no_room)
        return self._put(
            exchange.route(routing_key, header_table), message, now, ttl, priority, no_room
        )

    def put_again(
        self,
        waiting: Sequence[NoRoom],
        now: float,
        ttl: float | None,
        priority: int | None,
        no_room: list[NoRoom],
    ) -> tuple[int, int]:
        """Put each refused copy into its queue, if the queue still exists:
        (queues that took it, queues full); the disk refusing again adds to ``no_room``."""
        taken = refused = 0
        queues = self.namespace.queues
        for held in waiting:
            queue = queues.find(held.queue)
            if queue is None:
                continue  # deleted meanwhile: as if it had been before the publish
            try:
                taken += queue.put(held.messages, now, ttl=ttl, priority=priority)
            except Overflow:
                refused += 1
            except StorageFull as exc:
                no_room.append(held._replace(error=exc))
        return taken, refused

    def _publish_topic(
        self,
        exchange: Exchange,
        routing_key: str,
        message: CoreMessage,
        now: float,
        ttl: float | None,
        priority: int | None,
        no_room: list[NoRoom] | None = None,
    ) -> tuple[int, int]:
        """Publish through the core's topic trie: bound queues and native subscribers.

        Returns (queues and subscribers that took it, full queues that refused it).
        """
        try:
            result = self.namespace.topics.publish(
                topic_name(exchange.name, routing_key), [message], now, ttl, priority, no_room
            )
        except InvalidName:
            return 0, 0  # no binding can match a key the core cannot name
        return result.queues + result.subscriptions, result.refused

    def _put(
        self,
        targets: Sequence[str],
        message: CoreMessage,
        now: float,
        ttl: float | None,
        priority: int | None,
        no_room: list[NoRoom] | None = None,
    ) -> tuple[int, int]:
        """Put into each named queue that exists: (queues that took it, queues full)."""
        taken = refused = 0
        queues = self.namespace.queues
        for name in targets:
            queue = queues.find(name)
            if queue is None:
                continue
            try:
                taken += queue.put([message], now, ttl=ttl, priority=priority)
            except Overflow:
                refused += 1
            except StorageFull as exc:
                if no_room is None:
                    raise
                no_room.append(NoRoom(name, [message], exc))
        return taken, refused

    def _route_keys(
        self,
        exchange: Exchange,
        keys: Sequence[str],
        message: CoreMessage,
        header_table: Mapping[str, object] | None,
        now: float,
        ttl: float | None,
        priority: int | None,
        no_room: list[NoRoom] | None = None,
    ) -> tuple[int, int]:
        """Route with several keys (CC, BCC), or along exchange-to-exchange
        bindings: every queue reached, once.

        The first exchange routes the first key (the publish's) as usual (a
        topic exchange reaches native subscribers too; they see the message
        under that key only); the other keys add the queues their bindings
        name, and the exchanges reached through bindings, each routing every
        key, add theirs (cycles end where an exchange was already reached).
        Each queue takes the message once, however many keys or paths lead to
        it, as in RabbitMQ.
        """
        first, rest = keys[0], keys[1:]
        if exchange.name == DEFAULT:
            return self._put(list(keys), message, now, ttl, priority, no_room)
        done: set[str] = set()
        if exchange.type == TOPIC:
            taken, refused = self._publish_topic(
                exchange, first, message, now, ttl, priority, no_room
            )
            done.update(self._topic_queues(exchange, first))
        else:
            exchange_queues = exchange.route(first, header_table)
            done.update(exchange_queues)
            taken, refused = self._put(exchange_queues, message, now, ttl, priority, no_room)
        targets: dict[str, None] = {}
        for key in rest:
            targets.update(dict.fromkeys(self._queues(exchange, key, header_table)))
        reached = {exchange.name}
        pending = [exchange] if exchange.exchange_bindings else []
        while pending:
            source = pending.pop()
            names = dict.fromkeys(
                name for key in keys for name in source.route_exchanges(key, header_table)
            )
            for name in names:
                following = self.exchanges.get(name)
                if following is None or name in reached:
                    continue
                reached.add(name)
                pending.append(following)
                for key in keys:
                    targets.update(dict.fromkeys(self._queues(following, key, header_table)))
        more = [q for q in targets if q not in done]
        more_taken, more_refused = self._put(more, message, now, ttl, priority, no_room)
        return taken + more_taken, refused + more_refused

    def _queues(
        self, exchange: Exchange, key: str, header_table: Mapping[str, object] | None
    ) -> list[str]:
        """The queues ``exchange``'s own bindings send ``key`` to."""
        if exchange.type == TOPIC:
            return self._topic_queues(exchange, key)
        return exchange.route(key, header_table)

    def _topic_queues(self, exchange: Exchange, routing_key: str) -> list[str]:
        """The queues a topic exchange's bindings send ``routing_key`` to."""
        try:
            route = self.namespace.topics.match(topic_name(exchange.name, routing_key))
        except InvalidName:
            return []
        return [target.name for target in route.queues]

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
            raise self._locked(name)

    def _locked(self, name: str) -> SoftError:
        """405, in RabbitMQ's words: another connection's exclusive queue, or a
        redeclaration whose ``exclusive`` differs from the declaration's."""
        return SoftError(
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
        access: Access | None = None,
    ) -> tuple[str, int, int]:
        """Create or check a queue: (name, ready messages, consumers).

        ``access``: the connection's permissions, when a permissions file is in force.
        """
        if passive:
            if access is not None:
                access.queue(READ, name, self.name)
            queue = self.queue(name)
            self.check_owner(name, conn_id)
            return name, queue.ready_count, self.consumers.count(name)
        if not name:
            name = "amq.gen-" + secrets.token_urlsafe(16)
        elif name.startswith("amq."):
            raise SoftError(ACCESS_REFUSED, f"queue name '{name}' contains reserved prefix 'amq.*'")
        parsed = queue_arguments.parse(durable, arguments)
        if access is not None:
            self._check_declare(access, name, parsed.dead_letter)
        queues = self.namespace.queues
        existing = queues.find(name)
        declaration = self.declarations.get(name)
        if existing is not None:
            self.check_owner(name, conn_id)
            if declaration is not None and (declaration.exclusive_owner is not None) != exclusive:
                raise self._locked(name)  # RabbitMQ: before any other difference
            if declaration is not None:
                self._check_equivalent(
                    name, declaration, durable, auto_delete, arguments
                )
        try:
            queues.declare(name, parsed.options, now)
        except (StorageFull, StorageError) as exc:
            raise cannot_write(exc) from None
        except LimitExceeded as exc:
            action = f"cannot declare queue '{name}'"
            raise SoftError(PRECONDITION_FAILED, self._limit_text(action, "queue", exc)) from None
        except BrokerError as exc:  # Conflict (other options), InvalidName, BadRequest
            raise SoftError(PRECONDITION_FAILED, exc.message) from None
        queue = queues.get(name)
        if declaration is not None and queue.durable:
            self.journal.report_unsynced()  # declared only once it is on disk
        if declaration is None:
            if queue.durable:
                self.journal.save_queue(SavedQueue(name, exclusive, auto_delete, dict(arguments)))
            declaration = self.declarations[name] = QueueDeclaration(
                durable,
                conn_id if exclusive else None,
                auto_delete,
                dict(arguments),
                parsed.expires,
            )
        self._touch(name, declaration, now)
        self._set_dead_letter_route(name, parsed.dead_letter)
        return name, queue.ready_count, self.consumers.count(name)

    def _check_declare(
        self, access: Access, name: str, dead_letter: tuple[str, str | None] | None
    ) -> None:
        """Admin on the queue, and write on where its dead letters go (any key, when
        they keep their own)."""
        access.queue(ADMIN, name, self.name)
        if dead_letter is not None:
            exchange, key = dead_letter
            found = self.exchanges.get(exchange)
            type_ = DIRECT if found is None else found.type
            access.exchange(WRITE, exchange, type_, "#" if key is None else key, self.name)

    def _set_dead_letter_route(self, name: str, route: tuple[str, str | None] | None) -> None:
        queue = self.namespace.queues.get(name)
        if route is None:
            queue.dead_letter_route = None
        else:
            exchange, key = route
            queue.dead_letter_route = partial(self._dead_letter, name, exchange, key)

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
        wall_ms = self.namespace.broker.clock.wall_ms(now)
        return dead_letter(
            self._route_taken, exchange, key, source, messages, reason, now, wall_ms
        )

    def _route_taken(
        self,
        exchange: Exchange,
        routing_key: str,
        message: CoreMessage,
        headers: dict[str, object],
        now: float,
        priority: int | None,
        also: Sequence[str],
    ) -> int:
        return self.route(
            exchange, routing_key, message, headers, now, priority=priority, also=also
        )[0]

    def _check_equivalent(
        self,
        name: str,
        declaration: QueueDeclaration,
        durable: bool,
        auto_delete: bool,
        arguments: dict[str, object],
    ) -> None:
        for label, ours, theirs in (
            ("durable", declaration.durable, durable),
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
                PRECONDITION_FAILED, f"queue '{name}' in vhost '{self.name}' not empty"
            )
        ready = queue.ready_count
        self.namespace.queues.delete(name, now)
        return ready

    def _queue_deleted(self, name: str) -> None:
        """The core deleted a queue (through any door): forget it, cancel its consumers."""
        declaration = self.declarations.pop(name, None)
        if declaration is not None and declaration.expiry is not None:
            declaration.expiry.cancel()
        self.journal.forget_queue(name)
        for exchange in self.exchanges.values():
            if exchange.bindings:
                for key in exchange.drop_queue(name):
                    self.journal.forget_binding(exchange.name, QUEUE, name, key)
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
        self.journal.sync()

    def close(self) -> None:
        self._cancel_timers()
        self.journal.close()

    def _cancel_timers(self) -> None:
        for declaration in self.declarations.values():
            if declaration.expiry is not None:
                declaration.expiry.cancel()

    def destroy(self) -> None:
        self._cancel_timers()
        self.consumers.clear()
        self.reply_targets.clear()
        self.journal.destroy()


def vhost_of(namespace: Namespace) -> Vhost:
    """The AMQP state of ``namespace``, created on first use."""
    return namespace.extension(EXTENSION_KEY, Vhost)


def recover_vhosts(namespaces: Sequence[Namespace]) -> None:
    """At start-up: load the vhosts that have durable AMQP state, so their
    dead-letter routes, bindings and x-expires countdowns work before the
    first AMQP client connects (a message may expire in the meantime)."""
    for namespace in namespaces:
        if namespace.has_state(JOURNAL):
            vhost_of(namespace)


def _check_binding_arguments(exchange: Exchange, arguments: Mapping[str, object]) -> None:
    """406 for binding arguments the exchange's type refuses, as RabbitMQ's
    ``validate_binding``: a headers exchange's ``x-match`` is the one checked."""
    if exchange.type == HEADERS and (problem := x_match_problem(arguments)) is not None:
        raise SoftError(PRECONDITION_FAILED, problem)
