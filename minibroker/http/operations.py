"""The JSON API's operations, carried out on a core namespace; sans-I/O.

Each :class:`Operation` names its HTTP method and path, the fields it reads
(:mod:`~minibroker.http.fields`), the wire operation whose permissions it
needs (the same ``NEEDS`` table as the msgpack port), and a function that
runs it on the core with ``now`` handed in. The function returns the JSON
answer, or :class:`Parked` when the core finishes it later (a long-polling
fetch or read, a request awaiting its reply): the core then calls
``HttpPeer.resolve`` / ``reject`` and the adapter hands the answer on.

HTTP has no connection that holds deliveries, so the whole HTTP face is one
core *peer*: a delivery fetched over HTTP is acked or nacked by its id from
any HTTP client, and one never acked comes back after its visibility
timeout (the SQS endpoint works the same way).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from minibroker.core.durations import MIN_SECONDS
from minibroker.core.log_options import (
    MAX_RETENTION_BYTES,
    MAX_RETENTION_SECONDS,
    MIN_SEGMENT_BYTES,
    LogOptions,
)
from minibroker.core.logs import START_NAMES
from minibroker.core.namespace import Namespace
from minibroker.core.peer import PushSource
from minibroker.core.queue_options import (
    MAX_COUNT_OPTION,
    MAX_MESSAGE_TTL,
    MAX_VISIBILITY_TIMEOUT,
    OVERFLOW_POLICIES,
    QueueOptions,
)
from minibroker.core.queues import Message
from minibroker.core.rpc import RpcReply
from minibroker.errors import BadRequest, BrokerError, Conflict
from minibroker.http.fields import (
    MAX_INTEGER,
    Field,
    body_json,
    one_body,
    one_record_body,
    parse_message,
    record_key,
)
from minibroker.log_store import MAX_SEGMENT_BYTES, RecordBatch
from minibroker.record_format import decode_records
from minibroker.value_class import asdict

Json = Any
#: Bytes of records one read answers with at most (a JSON answer is built in memory).
MAX_READ_BYTES: Final = 4 * 1024 * 1024


#: Takes a parked operation back from the core, at ``now``.
Withdraw = Callable[[float], object]


@dataclass(frozen=True, slots=True)
class Parked:
    """The core finishes this operation later through the peer's ``token``.

    ``withdraw(now)`` takes it back from the core if its client leaves first:
    a fetch must not take messages into flight for nobody, and a read or a
    request must not hold a waiter (or a responder's attention) until its
    deadline.
    """

    token: int
    withdraw: Withdraw


@dataclass(frozen=True, slots=True)
class Call:
    """One operation's input: the namespace, the name from the path, the fields."""

    ns: Namespace
    name: str
    params: dict[str, Any]
    now: float
    peer: HttpPeer


@dataclass(frozen=True, slots=True)
class Operation:
    """One route of the JSON API."""

    #: Used as the OpenAPI operationId and for permissions (``access.permissions.NEEDS``).
    op: str
    method: str
    path: str
    summary: str
    run: Callable[[Call], Json]
    fields: Sequence[Field] = ()
    #: Read ``fields`` from the query string (GET) instead of a JSON body.
    query: bool = False
    #: The path parameter naming the resource ("queue", "topic", "log", "subject").
    resource: str | None = None
    #: JSON Schema of a successful answer.
    answer: dict[str, Any] | None = None
    #: JSON Schema rules of the body as a whole (``one_body``: a batch or one
    #: message, body or body_base64); the body is then required.
    body_rule: dict[str, Any] | None = None
    #: HTTP error statuses this operation answers besides those every one can
    #: (see ``minibroker.http.openapi``).
    errors: frozenset[int] = frozenset()


class HttpPeer:
    """The core's ``Peer`` port for the whole HTTP face (see the module docstring).

    ``on_finished(token, answer_or_error)`` receives what a parked operation
    ended with, already encoded as JSON values.
    """

    def __init__(
        self, conn_id: int, on_finished: Callable[[int, Json | BrokerError], None]
    ) -> None:
        self._conn_id = conn_id
        self._on_finished = on_finished
        self._tokens = itertools.count(1)
        #: token -> how to encode what the core resolves it with.
        self._encoders: dict[int, Callable[[Any], Json]] = {}

    @property
    def conn_id(self) -> int:
        return self._conn_id

    def park(self, encode: Callable[[Any], Json]) -> int:
        token = next(self._tokens)
        self._encoders[token] = encode
        return token

    def forget(self, token: int) -> None:
        """The parked operation is over for the adapter (answered, or the client left)."""
        self._encoders.pop(token, None)

    @property
    def parked(self) -> int:
        return len(self._encoders)

    def resolve(self, token: int, result: object) -> None:
        encode = self._encoders.pop(token, None)
        if encode is not None:
            self._on_finished(token, encode(result))

    def reject(self, token: int, error: BrokerError) -> None:
        if self._encoders.pop(token, None) is not None:
            self._on_finished(token, error)

    def takes_reply(self) -> bool:
        """Always: a request/reply call's answer goes to the one HTTP request
        waiting for it, which writes it through its own connection (hypercorn
        awaits the socket), so an HTTP client that stops reading holds at
        most the replies of its requests in progress (one per HTTP/1.1
        connection, up to hypercorn's stream limit on an HTTP/2 one, on at
        most ``--http-max-connections``), never a buffer that grows."""
        return True

    def push_ready(self, source: PushSource) -> None:
        raise AssertionError("the HTTP face holds no subscriptions")

    def kick(self, error: BrokerError) -> None:
        """Nothing to close: the HTTP face has no connection of its own."""


def _parked(call: Call, encode: Callable[[Any], Json], start: Callable[[int], Withdraw]) -> Parked:
    """Park an operation: ``start(token)`` hands it to the core and says how
    to take it back."""
    token = call.peer.park(encode)
    try:
        withdraw = start(token)
    except BaseException:
        call.peer.forget(token)
        raise
    return Parked(token, withdraw)


def _nothing_to_withdraw(now: float) -> None:
    """The operation was answered as it was parked (records were already there)."""


# ----------------------------------------------------------------- queues


def _delivery(m: Message) -> Json:
    out = {
        "delivery_id": m.delivery_id,
        "delivery_count": m.delivery_count,
        "published_at": m.published_at,
        **body_json(m.body),
    }
    if m.headers:
        out["headers"] = m.headers
    return out


def _deliveries(messages: object) -> Json:
    assert isinstance(messages, list)
    return {"deliveries": [_delivery(m) for m in messages]}


def _declare_queue(call: Call) -> Json:
    options = QueueOptions(**call.params)
    if options.dead_letter_queue == call.name:
        # 409, not 400: the body is well formed, it conflicts with the queue
        # the path names (a queue dead-lettering into itself could loop).
        raise Conflict(f"queue {call.name!r} cannot be its own dead-letter queue", queue=call.name)
    created = call.ns.queues.declare(call.name, options, call.now)
    return {"queue": call.name, "created": created}


def _delete_queue(call: Call) -> Json:
    return {"messages": call.ns.queues.delete(call.name, call.now)}


def _list_queues(call: Call) -> Json:
    return {"queues": [_queue_stats(s) for s in call.ns.queues.list()]}


def _queue_stats(stats: object) -> Json:
    out = asdict(stats)  # type: ignore[arg-type]
    out["queue"] = out.pop("name")
    return out


def _queue_stats_of(call: Call) -> Json:
    queue = call.ns.queues.get(call.name)
    out = _queue_stats(queue.statistics())
    out["options"] = queue.options.to_dict()
    return out


def _put(call: Call) -> Json:
    messages = _messages_of(call.params)
    return {"count": call.ns.queues.get(call.name).put(messages, call.now)}


def _messages_of(params: dict[str, Any]) -> list[Any]:
    """``messages`` or, for one message, ``body`` / ``body_base64`` / ``headers``."""
    single = {k: params[k] for k in ("body", "body_base64", "headers") if params[k] is not None}
    if params["messages"] is not None:
        if single:
            raise BadRequest("give 'messages' or one message's fields, not both")
        return list(params["messages"])
    return [parse_message(single, "the message")]


def _fetch(call: Call) -> Json:
    queue = call.ns.queues.get(call.name)
    p = call.params
    messages = queue.fetch(call.peer, p["max_messages"], call.now, p["visibility_timeout"])
    if messages or p["wait"] <= 0:
        return _deliveries(messages)

    def start(token: int) -> Withdraw:
        queue.wait(
            call.peer, token, p["max_messages"], call.now, p["wait"], p["visibility_timeout"]
        )
        return lambda now: queue.cancel_wait(call.peer, token, now)

    return _parked(call, _deliveries, start)


def _ack(call: Call) -> Json:
    queue = call.ns.queues.get(call.name)
    return {"count": queue.ack(call.peer, call.params["deliveries"], call.now)}


def _nack(call: Call) -> Json:
    p = call.params
    queue = call.ns.queues.get(call.name)
    count = queue.nack(call.peer, p["deliveries"], call.now, requeue=p["requeue"], delay=p["delay"])
    return {"count": count}


def _inspect(call: Call) -> Json:
    contents = call.ns.queues.get(call.name).inspect(call.params["limit"])
    now = call.now

    def view(m: Message) -> Json:
        out: Json = {"delivery_count": m.delivery_count, "published_at": m.published_at}
        out.update(body_json(m.body))
        if m.headers:
            out["headers"] = m.headers
        return out

    return {
        "ready": [view(m) for m in contents.ready],
        "in_flight": [
            {
                **view(held.message),
                "delivery_id": held.delivery_id,
                "connection": held.conn_id,
                "visible_in": max(0.0, held.deadline - now),
            }
            for held in contents.in_flight
        ],
        "delayed": [
            {**view(parked.message), "ready_in": max(0.0, parked.until - now)}
            for parked in contents.delayed
        ],
    }


# ----------------------------------------------------------------- topics


def _publish(call: Call) -> Json:
    result = call.ns.topics.publish(call.name, _messages_of(call.params), call.now)
    return {"subscriptions": result.subscriptions, "queues": result.queues}


def _bind(call: Call) -> Json:
    return {"created": call.ns.topics.bind(call.name, call.params["pattern"])}


# ------------------------------------------------------------------- logs


def _create_log(call: Call) -> Json:
    created = call.ns.logs.create(call.name, LogOptions(**call.params), call.now)
    return {"log": call.name, "created": created}


def _delete_log(call: Call) -> Json:
    return {"records": call.ns.logs.delete(call.name, call.now)}


def _list_logs(call: Call) -> Json:
    return {"logs": call.ns.logs.names()}


def _log_stats(call: Call) -> Json:
    return call.ns.logs.statistics(call.name).to_dict()


def _append(call: Call) -> Json:
    entries = call.params["records"]
    single = {k: v for k, v in call.params.items() if k != "records" and v is not None}
    if entries is not None and single:
        raise BadRequest("give 'records' or one record's fields, not both")
    if entries is None:
        message = parse_message(single, "the record", frozenset(single))
        entries = [(record_key(single, "the record"), message.headers, message.body)]
    first = call.ns.logs.append(call.name, entries, call.now)
    return {"offset": first, "count": len(entries)}


def _records(batch: object) -> Json:
    assert isinstance(batch, RecordBatch)
    records = []
    for r in decode_records(batch.data):
        out: Json = {"offset": r.offset, "timestamp_ms": r.timestamp_ms, **body_json(r.body)}
        if r.key is not None:
            out.update(body_json(r.key, "key"))
        if r.headers:
            out["headers"] = r.headers
        records.append(out)
    return {"records": records, "next_offset": batch.next_offset}


def _read(call: Call) -> Json:
    p = call.params
    logs = call.ns.logs
    max_bytes = min(p["max_bytes"], MAX_READ_BYTES)
    batch = logs.read(
        call.name, p["start"], p["timestamp_ms"], p["group"], p["max_records"], max_bytes, p["wait"]
    )
    if batch.count or p["wait"] <= 0:
        return _records(batch)

    def start(token: int) -> Withdraw:
        waiter = logs.wait_for_records(
            call.peer,
            token,
            call.name,
            batch.next_offset,
            p["max_records"],
            max_bytes,
            p["wait"],
            call.now,
        )
        return _nothing_to_withdraw if waiter is None else lambda now: waiter.detach()

    return _parked(call, _records, start)


def _commit(call: Call) -> Json:
    p = call.params
    call.ns.logs.commit(call.name, p["group"], p["offset"], call.now)
    return {"group": p["group"], "offset": p["offset"]}


# --------------------------------------------------------- request/reply


def _reply(reply: object) -> Json:
    assert isinstance(reply, RpcReply)
    out: Json = body_json(reply.body)
    if reply.headers:
        out["headers"] = reply.headers
    return out


def _request(call: Call) -> Json:
    p = call.params
    message = parse_message(
        {k: p[k] for k in ("body", "body_base64", "headers") if p[k] is not None}, "the request"
    )
    rpc = call.ns.rpc

    def start(token: int) -> Withdraw:
        rid = rpc.request(
            call.peer, token, call.name, message.body, message.headers, p["timeout"], call.now
        )
        return lambda now: rpc.abandon(rid)

    return _parked(call, _reply, start)


def _rpc_stats(call: Call) -> Json:
    return asdict(call.ns.rpc.snapshot())


# ------------------------------------------------------------------ table

_BODY: Final = (
    Field("body", "string", "one message's body as UTF-8 text"),
    Field("body_base64", "string", "one message's body as base64"),
    Field("headers", "headers", "one message's headers"),
)
_MESSAGES: Final = (
    Field(
        "messages",
        "messages",
        "a batch of messages (instead of body/headers)",
        max_items="max_batch",
    ),
    *_BODY,
)
_COUNT: Final = {"type": "object", "properties": {"count": {"type": "integer"}}}
_ANY_OBJECT: Final = {"type": "object"}
_DELIVERIES: Final = Field(
    "deliveries", "integers", "delivery ids", required=True, max_items="max_batch"
)


def _seconds(
    name: str, description: str, maximum: float | str, *, zero: bool = False, default: Any = None
) -> Field:
    """A duration: [MIN_SECONDS, maximum], or also 0 (see ``minibroker.core.durations``)."""
    return Field(
        name,
        "number",
        description,
        default=default,
        minimum=MIN_SECONDS,
        maximum=maximum,
        zero=zero,
    )


def _count(name: str, description: str, minimum: int, maximum: int | str, **kw: Any) -> Field:
    return Field(name, "integer", description, minimum=minimum, maximum=maximum, **kw)


#: Statuses of operations that write to storage: full (507) or failing (500) disk.
_WRITES: Final = frozenset({507})
_CONFLICT: Final = frozenset({409})
#: A batch a queue refuses (overflow with reject_publish): 429.
_OVERFLOW: Final = frozenset({429})

OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation("queue.list", "GET", "/v1/queues", "List the queues", _list_queues),
    Operation(
        "queue.declare",
        "PUT",
        "/v1/queues/{queue}",
        "Declare a queue (again with the same options: no-op; with others: conflict)",
        _declare_queue,
        (
            _count("max_length", "most ready messages", 0, MAX_COUNT_OPTION),
            _count("max_length_bytes", "most body bytes of ready messages", 0, MAX_COUNT_OPTION),
            Field(
                "overflow",
                "string",
                "what a put does when the queue is full",
                default="reject_publish",
                choices=OVERFLOW_POLICIES,
            ),
            _seconds("message_ttl", "seconds a message may wait", MAX_MESSAGE_TTL, zero=True),
            _seconds(
                "visibility_timeout",
                "seconds before redelivery",
                MAX_VISIBILITY_TIMEOUT,
                default=30.0,
            ),
            _count("max_deliveries", "deliveries before dead-lettering", 1, MAX_COUNT_OPTION),
            Field(
                "dead_letter_queue",
                "string",
                "where dead messages go (not the queue itself: 409)",
                name_rule="resource",
            ),
            Field("durable", "boolean", "journal the queue to disk", default=False),
        ),
        resource="queue",
        errors=_WRITES | _CONFLICT,
    ),
    Operation(
        "queue.delete",
        "DELETE",
        "/v1/queues/{queue}",
        "Delete a queue",
        _delete_queue,
        resource="queue",
        errors=_WRITES,
    ),
    Operation(
        "queue.stats",
        "GET",
        "/v1/queues/{queue}",
        "A queue's statistics and options",
        _queue_stats_of,
        resource="queue",
    ),
    Operation(
        "put",
        "POST",
        "/v1/queues/{queue}/messages",
        "Put messages into a queue (answered once confirmed)",
        _put,
        _MESSAGES,
        resource="queue",
        answer=_COUNT,
        body_rule=one_body("messages", ("headers",)),
        errors=_WRITES | _OVERFLOW,
    ),
    Operation(
        "fetch",
        "POST",
        "/v1/queues/{queue}/fetch",
        "Fetch deliveries, long-polling up to `wait` seconds",
        _fetch,
        (
            _count("max_messages", "most deliveries", 1, "max_fetch", default=1),
            _seconds(
                "wait",
                "seconds to wait for a message (0: do not wait)",
                "max_wait_seconds",
                zero=True,
                default=0.0,
            ),
            _seconds("visibility_timeout", "this fetch's ack deadline", MAX_VISIBILITY_TIMEOUT),
        ),
        resource="queue",
        errors=_WRITES,
    ),
    Operation(
        "ack",
        "POST",
        "/v1/queues/{queue}/ack",
        "Acknowledge deliveries",
        _ack,
        (_DELIVERIES,),
        resource="queue",
        answer=_COUNT,
        errors=_WRITES,
    ),
    Operation(
        "nack",
        "POST",
        "/v1/queues/{queue}/nack",
        "Give deliveries back (requeue, or dead-letter), optionally after a delay",
        _nack,
        (
            _DELIVERIES,
            Field("requeue", "boolean", "false: dead-letter or drop", default=True),
            _seconds(
                "delay",
                "seconds before the message is ready again (0: at once)",
                MAX_VISIBILITY_TIMEOUT,
                zero=True,
                default=0.0,
            ),
        ),
        resource="queue",
        answer=_COUNT,
        errors=_WRITES,
    ),
    Operation(
        "queue.inspect",
        "GET",
        "/v1/queues/{queue}/messages",
        "Look at ready, in-flight and delayed messages without taking them",
        _inspect,
        (_count("limit", "most messages of each kind", 0, "max_fetch", default=100),),
        query=True,
        resource="queue",
    ),
    Operation(
        "publish",
        "POST",
        "/v1/topics/{topic}/messages",
        "Publish to a topic: every matching subscription and bound queue gets a copy",
        _publish,
        _MESSAGES,
        resource="topic",
        body_rule=one_body("messages", ("headers",)),
        errors=_WRITES | _OVERFLOW,
    ),
    Operation(
        "bind",
        "PUT",
        "/v1/queues/{queue}/bindings",
        "Bind a topic pattern to a queue (a durable subscription)",
        _bind,
        (Field("pattern", "string", "topic pattern", required=True, name_rule="pattern"),),
        resource="queue",
        errors=_WRITES | _CONFLICT,
    ),
    Operation("log.list", "GET", "/v1/logs", "List the logs", _list_logs),
    Operation(
        "log.create",
        "PUT",
        "/v1/logs/{log}",
        "Create a log",
        _create_log,
        (
            _count("retention_bytes", "bytes kept at most", 1, MAX_RETENTION_BYTES),
            _seconds("retention_seconds", "seconds a record is kept", MAX_RETENTION_SECONDS),
            _count("segment_bytes", "bytes per segment file", MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
        ),
        resource="log",
        errors=_WRITES | _CONFLICT,
    ),
    Operation(
        "log.delete",
        "DELETE",
        "/v1/logs/{log}",
        "Delete a log",
        _delete_log,
        resource="log",
        errors=_WRITES,
    ),
    Operation(
        "log.stats",
        "GET",
        "/v1/logs/{log}",
        "A log's offsets, size, segments and consumer groups",
        _log_stats,
        resource="log",
    ),
    Operation(
        "append",
        "POST",
        "/v1/logs/{log}/records",
        "Append records; answers the first offset once stored",
        _append,
        (
            Field(
                "records",
                "records",
                "a batch of records (instead of body/key/headers)",
                max_items="max_batch",
            ),
            *_BODY,
            Field("key", "string", "one record's key as UTF-8 text"),
            Field("key_base64", "string", "one record's key as base64 (any bytes)"),
        ),
        resource="log",
        body_rule=one_record_body(),
        errors=_WRITES,
    ),
    Operation(
        "read",
        "GET",
        "/v1/logs/{log}/records",
        "Read records from an offset, long-polling up to `wait` seconds",
        _read,
        (
            Field(
                "start",
                "start",
                f"an offset or one of {', '.join(START_NAMES)} (committed needs a group)",
                default="earliest",
                minimum=0,
                choices=START_NAMES,
            ),
            _count(
                "timestamp_ms",
                "start at the first record at or after this time",
                0,
                MAX_INTEGER,
            ),
            Field("group", "string", "consumer group (for start=committed)", name_rule="resource"),
            _count("max_records", "most records", 1, "max_fetch", default=100),
            _count("max_bytes", "most bytes of records", 1, MAX_INTEGER, default=1_048_576),
            _seconds(
                "wait",
                "seconds to wait for a record (0: do not wait)",
                "max_wait_seconds",
                zero=True,
                default=0.0,
            ),
        ),
        query=True,
        resource="log",
        errors=_CONFLICT,
    ),
    Operation(
        "commit",
        "POST",
        "/v1/logs/{log}/commits",
        "Commit a consumer group's offset",
        _commit,
        (
            Field("group", "string", "consumer group", required=True, name_rule="resource"),
            Field(
                "offset",
                "integer",
                "the next offset the group reads (at most the log's end: 409)",
                required=True,
                minimum=0,
            ),
        ),
        resource="log",
        errors=_WRITES | _CONFLICT,
    ),
    Operation(
        "request",
        "POST",
        "/v1/requests/{subject}",
        "Send a request to one responder and wait for its reply, at most `timeout` seconds",
        _request,
        (
            *_BODY,
            _seconds("timeout", "seconds to wait for the reply", "max_wait_seconds", default=5.0),
        ),
        resource="subject",
        body_rule=one_body(None, ("headers",)),
        errors=frozenset({502, 504}),
    ),
    Operation("rpc.stats", "GET", "/v1/requests", "Responders and pending requests", _rpc_stats),
)
