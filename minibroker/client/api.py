"""The client API, written once for every client flavour: the table of every method.

Each method is declared once for every flavour: ``sends(call_builder)``
sends the ``Call`` the builder makes and returns its result (awaited on the
async clients, blocking on the blocking one); ``opens(state_builder,
async_kind, sync_kind)`` builds shared state and wraps it in the flavour's
object (a producer, a consumer, a subscription). Both are in
client/transport.py; the builder carries the signature and docstring. The
models keep their builders and objects in their own modules
(``client/queues.py``, ``client/topics.py``, ``client/logs.py``,
``client/rpc.py``); only ``serve`` and ``serving``, which run handlers the
flavour's way (tasks, or threads), are written per flavour
(``AsyncServing``, ``SyncServing`` in client/rpc.py).

``AsyncMethods`` serves the Trio, asyncio and in-process clients,
``SyncMethods`` the blocking client: the same table, so the method names,
arguments and results cannot drift between clients.
"""

from __future__ import annotations

from minibroker.client import logs, producer, queue_wire, queues, rpc, topics
from minibroker.client.protocol import Call
from minibroker.client.pushes import opened_async, opened_blocking
from minibroker.client.transport import AsyncTransport, SyncTransport, opens, sends


def ping_call(data: bytes | None = None) -> Call[bytes | None]:
    """Round trip to the broker; returns ``data`` back."""
    return Call("ping", {} if data is None else {"data": data})


def drop_namespace_call(name: str) -> Call[bool]:
    """Delete namespace ``name`` with everything in it (queues, messages,
    logs, subscriptions, responders; durable files too) and close the
    connections in it. Not the namespace this client is in. False if
    there was nothing to drop."""
    return Call("namespace.drop", {"namespace": name}, lambda r: bool(r["dropped"]))


class Methods:
    """Every method of every client flavour (see the module docstring)."""

    # One request, its result returned: the builders are in client/queue_wire.py,
    # topics.py, logs.py and rpc.py, each with its method's signature and docstring.
    ping = sends(ping_call)
    drop_namespace = sends(drop_namespace_call)
    declare_queue = sends(queue_wire.declare_queue_call)
    delete_queue = sends(queue_wire.delete_queue_call)
    purge_queue = sends(queue_wire.purge_queue_call)
    list_queues = sends(queue_wire.list_queues_call)
    queue_stats = sends(queue_wire.queue_stats_call)
    inspect_queue = sends(queue_wire.inspect_queue_call)
    put = sends(queue_wire.put_call)
    put_many = sends(queue_wire.put_many_call)
    publish = sends(topics.publish_call)
    publish_many = sends(topics.publish_many_call)
    bind = sends(topics.bind_call)
    unbind = sends(topics.unbind_call)
    create_log = sends(logs.create_log_call)
    delete_log = sends(logs.delete_log_call)
    list_logs = sends(logs.list_logs_call)
    log_stats = sends(logs.log_stats_call)
    append = sends(logs.append_call)
    append_many = sends(logs.append_many_call)
    read = sends(logs.read_call)
    commit = sends(logs.commit_call)
    committed = sends(logs.committed_call)
    request = sends(rpc.request_call)

    # Shared state in each flavour's object: a fetch's or a settle's plan run
    # (client/queues.py), a consumer (queue_consumer.py), a producer
    # (producer.py), a push subscription (pushes.py), a log tail (logs.py).
    fetch = opens(queues.fetch_state, queues.fetch_async, queues.fetch_blocking)
    ack = opens(queues.ack_state, queues.settle_async, queues.settle_blocking)
    nack = opens(queues.nack_state, queues.settle_async, queues.settle_blocking)
    consume = opens(queues.consume_state, queues.AsyncConsumer, queues.SyncConsumer)
    queue_producer = opens(
        producer.queue_producer_state, producer.AsyncQueueProducer, producer.SyncQueueProducer
    )
    log_producer = opens(
        producer.log_producer_state, producer.AsyncLogProducer, producer.SyncLogProducer
    )
    subscribe = opens(topics.subscribe_state, opened_async, opened_blocking)
    respond = opens(rpc.respond_state, opened_async, opened_blocking)
    tail = opens(logs.tail_state, logs.AsyncLogTail, logs.SyncLogTail)


class AsyncMethods(Methods, rpc.AsyncServing, AsyncTransport):
    """The methods of the Trio, asyncio and in-process clients."""


class SyncMethods(Methods, rpc.SyncServing, SyncTransport):
    """The methods of the blocking client (same names and arguments, no ``await``)."""
