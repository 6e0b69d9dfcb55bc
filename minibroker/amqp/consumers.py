"""Push delivery over a pull queue: the AMQP consumers of each queue, fed round robin.

The core's queue is a pull queue: it hands out messages when asked (``fetch``).
AMQP consumers expect the broker to push within their prefetch credit. The
bridge: the queue tells ``Consumers`` when messages become ready
(``Queue.ready_listeners``), and ``Consumers`` fetches for its consumers, one
message per consumer per turn when several share the queue (RabbitMQ's round
robin), up to the credit in one fetch for a lone consumer. A consumer whose
credit grows (an ack, a larger prefetch, a drained socket) asks for a turn
with ``start``. A native consumer of the same queue fetches on its own and
competes on equal terms.

Batching: an AMQP publish is one message, so a client's chunk of a hundred
publishes would otherwise mean a hundred fetches and a hundred deliveries of
one message each. While an AMQP connection dispatches a chunk of input it
``hold``s its vhost's consumers: queues that became ready (or whose
consumers gained credit) are noted, and fed once when the chunk is done
(``release``), one fetch of up to the credit per consumer. Nothing waits
longer for it: the chunk's output is written only after it is dispatched.
The exception is a queue with ``x-message-ttl: 0``, fed at once: the core
expires on arrival what its consumers cannot take then.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final, Protocol

from minibroker.core.peer import Peer
from minibroker.core.queue_message import Message
from minibroker.core.queue_options import UNTIL_SETTLED
from minibroker.core.queues import Queue

if TYPE_CHECKING:
    from minibroker.core.namespace import Namespace

#: Most messages one fetch hands a consumer with a large or unlimited credit.
PULL_BATCH: Final = 256


class Consumer(Protocol):
    """What is fed: a channel's consumer (see channel.py)."""

    tag: str
    queue: str
    exclusive: bool

    @property
    def peer(self) -> Peer: ...

    def credit(self) -> int:
        """How many more messages it may take now (0: none)."""
        ...

    def room(self) -> int:
        """Bytes of deliveries its connection's outbound buffer may still take."""
        ...

    def deliver(self, queue: Queue, messages: list[Message], now: float) -> None:
        """Send the fetched ``messages`` (encode them before calling into ``queue``)."""
        ...

    def cancelled_by_server(self, now: float) -> None:
        """Its queue is gone: tell the client (Basic.Cancel) and forget the consumer."""
        ...


class Consumers:
    """The consumers of one namespace's queues, by queue name."""

    def __init__(self, namespace: Namespace) -> None:
        self._queues = namespace.queues
        self._by_queue: dict[str, deque[Consumer]] = {}
        self._dispatching: set[str] = set()
        #: How many connections are dispatching input right now (see the module docstring).
        self._holds = 0
        #: Queues to feed when the last hold is released, in the order they became ready.
        self._pending: dict[str, None] = {}

    def of(self, queue: str) -> deque[Consumer]:
        """The consumers of ``queue`` (empty if none)."""
        return self._by_queue.get(queue) or deque()

    def count(self, queue: str) -> int:
        return len(self._by_queue.get(queue, ()))

    def add(self, consumer: Consumer, queue: Queue) -> None:
        consumers = self._by_queue.get(queue.name)
        if consumers is None:
            consumers = self._by_queue[queue.name] = deque()
            queue.ready_listeners.append(self._on_ready)
        consumers.append(consumer)

    def remove(self, consumer: Consumer) -> bool:
        """Forget ``consumer``; True when it was its queue's last one."""
        name = consumer.queue
        consumers = self._by_queue.get(name)
        if consumers is None or consumer not in consumers:
            return False
        consumers.remove(consumer)
        if consumers:
            return False
        del self._by_queue[name]
        queue = self._queues.find(name)
        if queue is not None:
            queue.ready_listeners.remove(self._on_ready)
        return True

    def drop_queue(self, name: str) -> list[Consumer]:
        """The queue was deleted: its consumers, forgotten here (the caller tells them)."""
        return list(self._by_queue.pop(name, ()))

    def of_connection(self, conn_id: int) -> list[Consumer]:
        return [c for cs in self._by_queue.values() for c in cs if c.peer.conn_id == conn_id]

    def clear(self) -> None:
        self._by_queue.clear()

    def hold(self) -> None:
        """A connection starts dispatching a chunk of input: note ready queues, feed later."""
        self._holds += 1

    def release(self, now: float) -> None:
        """The chunk is dispatched: feed every queue noted meanwhile (after the last hold)."""
        self._holds -= 1
        if self._holds or not self._pending:
            return
        pending = self._pending
        while pending:
            name = next(iter(pending))
            del pending[name]
            queue = self._queues.find(name)
            consumers = self._by_queue.get(name)
            if queue is not None and consumers:
                self._dispatch(queue, consumers, now)

    def start(self, consumer: Consumer, now: float) -> None:
        """Give ``consumer``'s queue a turn (a new consumer, or one whose credit grew)."""
        if self._holds:
            self._pending[consumer.queue] = None
            return
        queue = self._queues.find(consumer.queue)
        consumers = self._by_queue.get(consumer.queue)
        if queue is not None and consumers:
            self._dispatch(queue, consumers, now)

    def _on_ready(self, queue: Queue, now: float) -> None:
        # A queue with x-message-ttl 0 (or a publish with expiration "0")
        # expires what is not taken at once: feed it now, not when the chunk
        # is done (see Queue.now_or_never).
        if self._holds and not queue.now_or_never:
            self._pending[queue.name] = None
            return
        consumers = self._by_queue.get(queue.name)
        if consumers:
            self._dispatch(queue, consumers, now)

    def _dispatch(self, queue: Queue, consumers: deque[Consumer], now: float) -> None:
        """Hand ready messages to the queue's consumers, round robin, within their credit.

        Re-entry (a delivery that requeues, making messages ready again) is
        absorbed by the loop already running.
        """
        name = queue.name
        if name in self._dispatching:
            return
        self._dispatching.add(name)
        try:
            idle = 0
            while queue.ready_count and idle < len(consumers) and not queue.deleted:
                consumer = consumers[0]
                consumers.rotate(-1)
                credit = consumer.credit()
                if credit <= 0:
                    idle += 1
                    continue
                take = min(credit, PULL_BATCH) if len(consumers) == 1 else 1
                # A batch is bounded by what the consumer's outbound buffer
                # may still take, as a native fetch by its frame: else a
                # client that stops reading with no prefetch limit (or
                # no_ack) is handed PULL_BATCH big messages at once, up to
                # 2 GiB of buffer. The first message goes whatever its size.
                messages = queue.fetch(
                    consumer.peer,
                    take,
                    now,
                    UNTIL_SETTLED,
                    consumer.room() if take > 1 else None,
                )
                if not messages:
                    return  # everything ready had expired
                consumer.deliver(queue, messages, now)
                idle = 0
        finally:
            self._dispatching.discard(name)
