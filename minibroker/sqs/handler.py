"""SQS actions carried out on minibroker's queue core; sans-I/O.

``SqsHandler.handle(request, now)`` takes a parsed request (``wire``) and
returns the answer in the JSON protocol's shape, raises ``SqsError``, or
returns ``Parked`` for a ReceiveMessage that long-polls: the core then
finishes it through the ``Peer`` port this handler implements (``resolve``
when messages arrive or the wait runs out, ``reject`` if the queue is
deleted), and the handler hands the answer to ``on_finished``. Nothing here
reads a clock or touches a socket; each connection's session
(``minibroker/sqs/session.py``) passes ``now`` and the parsed request.

There is no second queue implementation: an SQS queue *is* a core queue,
SendMessage is ``Queue.put``, ReceiveMessage is ``Queue.fetch`` (and
``Queue.wait``), DeleteMessage is ``Queue.ack``, ChangeMessageVisibility is
``Queue.change_visibility``. HTTP has no connection to hold deliveries, so
the whole endpoint is one core *peer*: a receipt handle is a delivery id
that any SQS client may settle, as in SQS.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import re
import secrets
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from minibroker.core.broker import Broker, check_namespace_name
from minibroker.core.namespace import Namespace
from minibroker.core.peer import PushSource
from minibroker.core.queues import Message, Queue
from minibroker.errors import (
    BadRequest,
    BrokerError,
    Conflict,
    InvalidName,
    LimitExceeded,
    NotFound,
    Overflow,
    TooLarge,
    UnknownDelivery,
)
from minibroker.sqs import attributes as queue_attributes
from minibroker.sqs.attributes import QueueSettings
from minibroker.sqs.digests import md5_of_attributes, md5_of_body
from minibroker.sqs.errors import (
    SqsError,
    batch_error,
    broker_failure,
    invalid_parameter,
    message_not_inflight,
    missing_parameter,
    queue_does_not_exist,
    queue_name_exists,
    unknown_action,
)
from minibroker.sqs.fifo import (
    DEDUPLICATION_HEADER,
    GROUP_HEADER,
    SEQUENCE_HEADER,
    Sent,
    check_id,
    content_deduplication_id,
)
from minibroker.sqs.messages import (
    TRACE_HEADER,
    AttributeValue,
    check_body,
    decode_body,
    from_headers,
    message_id_of,
    parse_attributes,
    select_attributes,
    to_headers,
)
from minibroker.sqs.numbers import integer_of
from minibroker.sqs.persist import SettingsStore
from minibroker.sqs.urls import (
    namespace_of,
    namespace_of_path,
    parse_queue_url,
    parse_receipt_handle,
    queue_arn,
    queue_url,
    receipt_handle,
)
from minibroker.sqs.wire import SqsRequest

DEFAULT_REGION: Final = "us-east-1"
MAX_BATCH_ENTRIES: Final = 10
MAX_BATCH_BYTES: Final = 1_048_576
MAX_TAGS: Final = 50
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_FIFO_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,75}\.fifo$")
_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
#: Message system attributes a receive can ask for and this endpoint has.
_SYSTEM_ATTRIBUTES: Final = (
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
    "MessageGroupId",
    "MessageDeduplicationId",
    "SequenceNumber",
)
#: System attributes kept in headers: attribute -> header.
_SYSTEM_HEADERS: Final = {
    "AWSTraceHeader": TRACE_HEADER,
    "MessageGroupId": GROUP_HEADER,
    "MessageDeduplicationId": DEDUPLICATION_HEADER,
    "SequenceNumber": SEQUENCE_HEADER,
}
_SENDER_ID: Final = "AIDAMINIBROKER000000"

Answer = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Parked:
    """A ReceiveMessage waiting in the core; ``on_finished(token, ...)`` ends it."""

    token: int


@dataclass(slots=True)
class _Outgoing:
    """A message for ``Queue.put`` (anything with ``body`` and ``headers``)."""

    body: bytes
    headers: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class _Receive:
    """What a ReceiveMessage asked for, to build its answer when messages come."""

    namespace: str
    queue: str
    region: str
    system_names: frozenset[str]
    attribute_names: list[str]


class SqsHandler:
    """The SQS endpoint's state: queue settings, parked receives. One core peer."""

    def __init__(
        self,
        broker: Broker,
        conn_id: int,
        on_finished: Callable[[int, Answer | SqsError], None],
    ) -> None:
        self._broker = broker
        self._conn_id = conn_id
        self._on_finished = on_finished
        self._settings: dict[tuple[str, str], QueueSettings] = {}
        #: Where settings are kept across restarts (a broker with a data directory).
        self._store = SettingsStore(broker.storage) if broker.storage is not None else None
        #: Namespaces whose queue deletions we listen to (weakly: a dropped
        #: namespace's settings are forgotten when the next namespace is seen).
        self._watched: dict[str, weakref.ref[Namespace]] = {}
        self._parked: dict[int, _Receive] = {}
        self._tokens = itertools.count(1)
        #: Put in every receipt handle: a handle from before a restart names a
        #: delivery id the core may since have given to another message.
        self._incarnation = secrets.randbits(48)
        self._actions: dict[str, Callable[[SqsRequest, str, float], Answer | Parked]] = {
            "CreateQueue": self._create_queue,
            "GetQueueUrl": self._get_queue_url,
            "ListQueues": self._list_queues,
            "DeleteQueue": self._delete_queue,
            "PurgeQueue": self._purge_queue,
            "GetQueueAttributes": self._get_queue_attributes,
            "SetQueueAttributes": self._set_queue_attributes,
            "SendMessage": self._send_message,
            "SendMessageBatch": self._send_message_batch,
            "ReceiveMessage": self._receive_message,
            "DeleteMessage": self._delete_message,
            "DeleteMessageBatch": self._delete_message_batch,
            "ChangeMessageVisibility": self._change_message_visibility,
            "ChangeMessageVisibilityBatch": self._change_message_visibility_batch,
            "TagQueue": self._tag_queue,
            "UntagQueue": self._untag_queue,
            "ListQueueTags": self._list_queue_tags,
            "ListDeadLetterSourceQueues": self._list_dead_letter_source_queues,
        }

    # ------------------------------------------------------------ the Peer port

    @property
    def conn_id(self) -> int:
        return self._conn_id

    def resolve(self, token: int, result: object) -> None:
        receive = self._parked.pop(token, None)
        if receive is None:
            return
        assert isinstance(result, list)
        self._on_finished(token, self._received(receive, result))

    def reject(self, token: int, error: BrokerError) -> None:
        if self._parked.pop(token, None) is not None:
            self._on_finished(token, _translate(error))

    def push_ready(self, source: PushSource) -> None:
        raise AssertionError("SQS subscribes to nothing")

    def kick(self, error: BrokerError) -> None:
        raise AssertionError("queues never kick")

    # --------------------------------------------------------------- requests

    @property
    def actions(self) -> list[str]:
        return sorted(self._actions)

    def handle(self, request: SqsRequest, now: float) -> Answer | Parked:
        """Carry out one request: its answer, ``Parked``, or SqsError."""
        action = self._actions.get(request.action)
        if action is None:
            raise unknown_action(request.action)
        try:
            return action(request, namespace_of_path(request.path), now)
        except SqsError:
            raise
        except BrokerError as exc:
            raise _translate(exc) from None

    def cancel(self, token: int, now: float) -> None:
        """The HTTP client went away during a long poll: withdraw it, deliver nothing."""
        receive = self._parked.get(token)
        if receive is None:
            return
        namespace = self._broker.find_namespace(receive.namespace)
        queue = None if namespace is None else namespace.queues.find(receive.queue)
        if queue is None or not queue.cancel_wait(self, token, now):
            self._parked.pop(token, None)

    # ------------------------------------------------------------- helpers

    def _namespace(self, name: str, *, create: bool = False) -> Namespace:
        """The namespace called ``name``; only CreateQueue creates one, so requests
        to made-up paths or queue URLs cost the broker nothing."""
        try:
            check_namespace_name(name)
        except InvalidName as exc:
            raise queue_does_not_exist(exc.message) from None
        found = self._broker.find_namespace(name)
        if found is None and not create:
            raise queue_does_not_exist(f"no queue in namespace {name!r}")
        namespace = found or self._broker.namespace(name)
        watched = self._watched.get(name)
        if watched is None or watched() is not namespace:
            self._watch(name, namespace)
        return namespace

    def _watch(self, name: str, namespace: Namespace) -> None:
        """Listen to ``namespace``'s queue deletions, and forget the settings of
        namespaces that are gone (dropped, or dropped and made anew)."""
        find = self._broker.find_namespace
        # A watched namespace that was collected (``ref()`` is None) is gone too,
        # whatever ``find`` returns now.
        gone = {
            ns
            for ns, ref in self._watched.items()
            if ns == name or (watched := ref()) is None or find(ns) is not watched
        }
        if gone:
            for key in [key for key in self._settings if key[0] in gone]:
                del self._settings[key]
            for ns in gone:
                del self._watched[ns]
        self._watched[name] = weakref.ref(namespace)
        namespace.queues.on_delete.append(self._forgetter(name))

    def _forgetter(self, namespace: str) -> Callable[[str], None]:
        """Drops a deleted queue's settings (however it was deleted)."""

        def forget(queue: str) -> None:
            if self._settings.pop((namespace, queue), None) is not None and self._store:
                self._store.forget(namespace, queue)

        return forget

    def _queue_of(self, request: SqsRequest, default: str) -> tuple[Namespace, Queue]:
        ns_name, name = parse_queue_url(request.params.get("QueueUrl"), default)
        namespace = self._namespace(ns_name)
        queue = namespace.queues.find(name)
        if queue is None:
            raise queue_does_not_exist(name)
        return namespace, queue

    def _settings_of(self, namespace: Namespace, queue: str, now: float) -> QueueSettings:
        key = (namespace.name, queue)
        settings = self._settings.get(key)
        if settings is None:  # a queue declared natively: SQS's defaults
            seconds = self._broker.clock.wall_ms(now) // 1000
            settings = self._settings[key] = QueueSettings(created=seconds, modified=seconds)
        return settings

    def _save(self, namespace: Namespace, queue: str, settings: QueueSettings, now: float) -> None:
        """Keep a durable queue's settings across restarts (fsynced before the answer)."""
        store = self._store
        found = namespace.queues.find(queue)
        if store is not None and found is not None and found.options.durable:
            store.save(namespace.name, queue, settings, self._broker.clock.wall_ms(now))

    def recover(self) -> None:
        """Load the settings saved by an earlier run, once the core has recovered
        every namespace and before any client is served; FIFO queues get their
        messages' groups back (``Queue.restore_groups``), and the deduplication
        ids of the messages sent in the last five minutes back in their window."""
        store = self._store
        if store is None:
            return
        for name, namespace in self._broker.namespaces.items():
            self._watch(name, namespace)
            for queue_name, settings in store.load(name).items():
                queue = namespace.queues.find(queue_name)
                if queue is None:
                    store.forget(name, queue_name)  # its queue did not come back
                    continue
                self._settings[(name, queue_name)] = settings
                if settings.fifo:
                    queue.restore_groups(
                        _restoring_deduplication(settings, self._broker.clock.epoch_offset)
                    )

    def _url(self, request: SqsRequest, namespace: str, queue: str) -> str:
        return queue_url(request.base_url, namespace, queue)

    # ------------------------------------------------------------- queues

    def _create_queue(self, request: SqsRequest, default: str, now: float) -> Answer:
        params = request.params
        name = params.get("QueueName")
        if not isinstance(name, str) or not name:
            raise missing_parameter("QueueName")
        requested = _string_map(params.get("Attributes"), "Attributes")
        fifo = requested.get("FifoQueue", "").lower() == "true"
        if not (_FIFO_QUEUE_NAME if fifo else _QUEUE_NAME).match(name):
            raise invalid_parameter(
                "Can only include alphanumeric characters, hyphens, or underscores. "
                "1 to 80 in length; a FIFO queue's name ends with .fifo, and only its does"
            )
        tags = _tags(params.get("tags", params.get("Tags")))
        namespace = self._namespace(default, create=True)
        queues = namespace.queues
        existing = queues.find(name)
        if existing is not None:
            settings = self._settings_of(namespace, name, now)
            if settings.fifo != fifo:
                raise queue_name_exists(name, "FifoQueue")
            options, wanted = queue_attributes.apply(
                requested, existing.options, settings, **self._context(namespace, name)
            )
            if options != existing.options or _comparable(wanted) != _comparable(settings):
                raise queue_name_exists(name, ", ".join(sorted(requested)) or "its attributes")
            return {"QueueUrl": self._url(request, namespace.name, name)}
        seconds = self._broker.clock.wall_ms(now) // 1000
        options, settings = queue_attributes.apply(
            requested,
            queue_attributes.new_options(),
            QueueSettings(created=seconds, modified=seconds, tags=tags, fifo=fifo),
            **self._context(namespace, name),
        )
        queues.declare(name, options, now)
        self._settings[(namespace.name, name)] = settings
        self._save(namespace, name, settings, now)
        return {"QueueUrl": self._url(request, namespace.name, name)}

    def _context(self, namespace: Namespace, queue: str) -> dict[str, Any]:
        return {
            "queue": queue,
            "namespace": namespace.name,
            "queue_exists": namespace.queues.__contains__,
        }

    def _get_queue_url(self, request: SqsRequest, default: str, now: float) -> Answer:
        name = request.params.get("QueueName")
        if not isinstance(name, str) or not name:
            raise missing_parameter("QueueName")
        owner = request.params.get("QueueOwnerAWSAccountId")
        if isinstance(owner, str) and owner:
            default = namespace_of(owner)
        namespace = self._namespace(default)
        if name not in namespace.queues:
            raise queue_does_not_exist(name)
        return {"QueueUrl": self._url(request, namespace.name, name)}

    def _list_queues(self, request: SqsRequest, default: str, now: float) -> Answer:
        prefix = request.params.get("QueueNamePrefix") or ""
        if not isinstance(prefix, str):
            raise invalid_parameter("QueueNamePrefix must be a string.")
        namespace = self._broker.find_namespace(default)
        names = [] if namespace is None else namespace.queues.names()
        chosen = [n for n in names if n.startswith(prefix)]
        return self._page(request, default, chosen, "QueueUrls")

    def _page(
        self, request: SqsRequest, namespace: str, names: list[str], member: str
    ) -> Answer:
        """One page of queue URLs: all (at most 1000) without MaxResults, else
        MaxResults of them and a NextToken naming the last one given."""
        params = request.params
        limit = _optional_integer(params, "MaxResults", 1, 1000)
        token = params.get("NextToken")
        if token:
            try:
                after = base64.urlsafe_b64decode(str(token)).decode()
            except (ValueError, UnicodeDecodeError):
                raise invalid_parameter("Invalid NextToken value.") from None
            names = [n for n in names if n > after]
        shown = names[: limit or 1000]
        out: Answer = {}
        if shown:
            out[member] = [self._url(request, namespace, n) for n in shown]
        if limit is not None and len(names) > limit:
            out["NextToken"] = base64.urlsafe_b64encode(shown[-1].encode()).decode()
        return out

    def _delete_queue(self, request: SqsRequest, default: str, now: float) -> Answer:
        namespace, queue = self._queue_of(request, default)
        namespace.queues.delete(queue.name, now)
        return {}

    def _purge_queue(self, request: SqsRequest, default: str, now: float) -> Answer:
        _, queue = self._queue_of(request, default)
        queue.purge(now)
        queue.purge_held(self, now)
        return {}

    def _get_queue_attributes(
        self, request: SqsRequest, default: str, now: float
    ) -> Answer:
        namespace, queue = self._queue_of(request, default)
        names = _string_list(request.params.get("AttributeNames"), "AttributeNames")
        found = queue_attributes.read(
            names,
            queue=queue.name,
            namespace=namespace.name,
            region=request.region or DEFAULT_REGION,
            options=queue.options,
            settings=self._settings_of(namespace, queue.name, now),
            stats=queue.statistics(),
        )
        return {"Attributes": found} if found else {}

    def _set_queue_attributes(
        self, request: SqsRequest, default: str, now: float
    ) -> Answer:
        namespace, queue = self._queue_of(request, default)
        requested = _string_map(request.params.get("Attributes"), "Attributes")
        settings = self._settings_of(namespace, queue.name, now)
        options, updated = queue_attributes.apply(
            requested, queue.options, settings, **self._context(namespace, queue.name)
        )
        namespace.queues.reconfigure(queue.name, options, now)
        updated.modified = self._broker.clock.wall_ms(now) // 1000
        self._settings[(namespace.name, queue.name)] = updated
        self._save(namespace, queue.name, updated, now)
        return {}

    # ----------------------------------------------------------- tags

    def _tag_queue(self, request: SqsRequest, default: str, now: float) -> Answer:
        namespace, queue = self._queue_of(request, default)
        settings = self._settings_of(namespace, queue.name, now)
        merged = {**settings.tags, **_tags(request.params.get("Tags"))}
        if len(merged) > MAX_TAGS:
            raise invalid_parameter(f"Too many tags: a queue has at most {MAX_TAGS}.")
        settings.tags = merged
        self._save(namespace, queue.name, settings, now)
        return {}

    def _untag_queue(self, request: SqsRequest, default: str, now: float) -> Answer:
        namespace, queue = self._queue_of(request, default)
        settings = self._settings_of(namespace, queue.name, now)
        for key in _string_list(request.params.get("TagKeys"), "TagKeys"):
            settings.tags.pop(key, None)
        self._save(namespace, queue.name, settings, now)
        return {}

    def _list_queue_tags(self, request: SqsRequest, default: str, now: float) -> Answer:
        namespace, queue = self._queue_of(request, default)
        tags = self._settings_of(namespace, queue.name, now).tags
        return {"Tags": dict(tags)} if tags else {}

    def _list_dead_letter_source_queues(
        self, request: SqsRequest, default: str, now: float
    ) -> Answer:
        namespace, queue = self._queue_of(request, default)
        queues = namespace.queues
        sources = [
            name
            for name in queues.names()
            if queues.get(name).options.dead_letter_queue == queue.name
        ]
        return self._page(request, namespace.name, sources, "queueUrls")

    # ----------------------------------------------------------- messages

    def _send_message(self, request: SqsRequest, default: str, now: float) -> Answer:
        namespace, queue = self._queue_of(request, default)
        settings = self._settings_of(namespace, queue.name, now)
        prepared = _prepare_send(request.params, settings, self._broker.clock.wall_ms(now))
        if not _deduplicated(prepared, settings, now):
            queue.put([prepared.outgoing], now, delay=prepared.delay, group=prepared.group)
            _remember(prepared, settings, now)
        return prepared.answer

    def _send_message_batch(self, request: SqsRequest, default: str, now: float) -> Answer:
        namespace, queue = self._queue_of(request, default)
        settings = self._settings_of(namespace, queue.name, now)
        entries = _batch_entries(request.params)
        # Each entry's answer, success or failure (listed in the entries' order).
        successful: dict[str, Answer] = {}
        failed: dict[str, Answer] = {}
        # Prepared entries by (delay, message group), so each of these is one put.
        puts: dict[tuple[int, str | None], list[tuple[str, _Prepared]]] = {}
        # FIFO: this batch's earlier entries by deduplication key, and the later
        # entries with the same key (answered as their earlier one turns out).
        in_batch: dict[str, str] = {}
        repeats: list[tuple[str, _Prepared, str]] = []
        total = 0
        wall_ms = self._broker.clock.wall_ms(now)
        for entry in entries:
            entry_id = entry["Id"]
            try:
                prepared = _prepare_send(entry, settings, wall_ms)
            except SqsError as exc:
                failed[entry_id] = _failure(entry_id, exc)
                continue
            total += prepared.size
            key = prepared.deduplication_key
            if key is not None and key in in_batch:
                repeats.append((entry_id, prepared, in_batch[key]))
                continue
            if _deduplicated(prepared, settings, now):
                successful[entry_id] = {"Id": entry_id, **prepared.answer}
                continue
            if key is not None:
                in_batch[key] = entry_id
            puts.setdefault((prepared.delay, prepared.group), []).append((entry_id, prepared))
        if total > MAX_BATCH_BYTES:
            raise batch_error(
                "BatchRequestTooLong",
                f"Batch requests cannot be longer than {MAX_BATCH_BYTES} bytes. "
                f"You have sent {total} bytes.",
            )
        for (delay, group), batch in puts.items():
            try:
                queue.put([p.outgoing for _, p in batch], now, delay=delay, group=group)
            except BrokerError as exc:
                error = _translate(exc)
                failed.update((entry_id, _failure(entry_id, error)) for entry_id, _ in batch)
                continue
            for entry_id, prepared in batch:
                _remember(prepared, settings, now)
                successful[entry_id] = {"Id": entry_id, **prepared.answer}
        for entry_id, prepared, first_id in repeats:
            # A duplicate of an entry that was stored answers as it does; of
            # one that failed, fails as it did (its id names no message).
            first = successful.get(first_id)
            if first is None:
                failed[entry_id] = {**failed[first_id], "Id": entry_id}
                continue
            prepared.answer["MessageId"] = first["MessageId"]
            prepared.answer["SequenceNumber"] = first["SequenceNumber"]
            successful[entry_id] = {"Id": entry_id, **prepared.answer}
        order = [entry["Id"] for entry in entries]
        return {
            "Successful": [successful[i] for i in order if i in successful],
            "Failed": [failed[i] for i in order if i in failed],
        }

    def _receive_message(
        self, request: SqsRequest, default: str, now: float
    ) -> Answer | Parked:
        namespace, queue = self._queue_of(request, default)
        params = request.params
        settings = self._settings_of(namespace, queue.name, now)
        max_messages = _integer(params, "MaxNumberOfMessages", 1, 10, 1)
        wait = _integer(params, "WaitTimeSeconds", 0, 20, settings.receive_wait_seconds)
        visibility = _optional_integer(params, "VisibilityTimeout", 0, 43_200)
        if visibility == 0:
            raise invalid_parameter(
                "minibroker needs a VisibilityTimeout of at least 1 second on ReceiveMessage."
            )
        system = set(_string_list(params.get("AttributeNames"), "AttributeNames"))
        system.update(
            _string_list(params.get("MessageSystemAttributeNames"), "MessageSystemAttributeNames")
        )
        receive = _Receive(
            namespace.name,
            queue.name,
            request.region or DEFAULT_REGION,
            frozenset(_SYSTEM_ATTRIBUTES if "All" in system else system),
            _string_list(params.get("MessageAttributeNames"), "MessageAttributeNames"),
        )
        timeout = None if visibility is None else float(visibility)
        messages = queue.fetch(self, max_messages, now, timeout)
        if messages or not wait:
            return self._received(receive, messages)
        token = next(self._tokens)
        self._parked[token] = receive
        queue.wait(self, token, max_messages, now, float(wait), timeout)
        return Parked(token)

    def _received(self, receive: _Receive, messages: list[Message]) -> Answer:
        """The ReceiveMessage answer; reads the messages at once (the queue owns them)."""
        if not messages:
            return {}
        return {"Messages": [self._message(receive, m) for m in messages]}

    def _message(self, receive: _Receive, m: Message) -> Answer:
        body = decode_body(m.body)
        body_md5 = md5_of_body(body)
        headers = m.headers
        message_id = message_id_of(
            headers, f"{receive.namespace}/{receive.queue}/{m.published_at}/{body_md5}"
        )
        out: Answer = {
            "MessageId": message_id,
            "ReceiptHandle": receipt_handle(receive.queue, m.delivery_id, self._incarnation),
            "MD5OfBody": body_md5,
            "Body": body,
        }
        system = self._system_attributes(receive, m)
        if system:
            out["Attributes"] = system
        chosen = select_attributes(from_headers(headers), receive.attribute_names)
        if chosen:
            out["MD5OfMessageAttributes"] = md5_of_attributes(chosen)
            out["MessageAttributes"] = {name: v.to_json() for name, v in chosen.items()}
        return out

    def _system_attributes(self, receive: _Receive, m: Message) -> dict[str, str]:
        wanted = receive.system_names
        if not wanted:
            return {}
        headers = m.headers or {}
        values = {
            "SenderId": _SENDER_ID,
            "SentTimestamp": str(m.published_at),
            "ApproximateReceiveCount": str(m.delivery_count),
        }
        for name, header in _SYSTEM_HEADERS.items():
            if header in headers:
                values[name] = headers[header]
        source = headers.get("x-death-queue")
        if source is not None:
            values["DeadLetterQueueSourceArn"] = queue_arn(
                receive.region, receive.namespace, source
            )
        return {name: value for name, value in values.items() if name in wanted}

    def _delete_message(self, request: SqsRequest, default: str, now: float) -> Answer:
        _, queue = self._queue_of(request, default)
        self._delete(queue, request.params.get("ReceiptHandle"), now)
        return {}

    def _delete(self, queue: Queue, handle: object, now: float) -> None:
        if handle is None:
            raise missing_parameter("ReceiptHandle")
        delivery_id = self._delivery_of(handle, queue)
        if delivery_id is None:
            return  # from before a restart: that receipt is over, as a redelivered one
        # Already deleted, or redelivered since: SQS answers success too.
        with contextlib.suppress(UnknownDelivery):
            queue.ack(self, [delivery_id], now)

    def _delivery_of(self, handle: object, queue: Queue) -> int | None:
        """The delivery id a handle names, or None if an earlier incarnation of
        the endpoint (before a restart) gave it out."""
        incarnation, delivery_id = parse_receipt_handle(handle, queue.name)
        return delivery_id if incarnation == self._incarnation else None

    def _delete_message_batch(
        self, request: SqsRequest, default: str, now: float
    ) -> Answer:
        _, queue = self._queue_of(request, default)
        return _each_entry(
            _batch_entries(request.params),
            lambda entry: self._delete(queue, entry.get("ReceiptHandle"), now),
        )

    def _change_message_visibility(
        self, request: SqsRequest, default: str, now: float
    ) -> Answer:
        _, queue = self._queue_of(request, default)
        self._change_visibility(queue, request.params, now)
        return {}

    def _change_visibility(self, queue: Queue, params: dict[str, Any], now: float) -> None:
        handle = params.get("ReceiptHandle")
        if handle is None:
            raise missing_parameter("ReceiptHandle")
        timeout = _optional_integer(params, "VisibilityTimeout", 0, 43_200)
        if timeout is None:
            raise missing_parameter("VisibilityTimeout")
        delivery_id = self._delivery_of(handle, queue)
        if delivery_id is None:
            raise message_not_inflight()
        try:
            queue.change_visibility(self, [delivery_id], now, float(timeout))
        except UnknownDelivery:
            raise message_not_inflight() from None

    def _change_message_visibility_batch(
        self, request: SqsRequest, default: str, now: float
    ) -> Answer:
        _, queue = self._queue_of(request, default)
        return _each_entry(
            _batch_entries(request.params),
            lambda entry: self._change_visibility(queue, entry, now),
        )


# -------------------------------------------------------------- functions


def _group_of(message: Message) -> str | None:
    headers = message.headers
    return headers.get(GROUP_HEADER) if headers else None


def _restoring_deduplication(
    settings: QueueSettings, epoch_offset: float
) -> Callable[[Message], str | None]:
    """``_group_of`` for ``Queue.restore_groups`` at start-up that also puts
    each message's deduplication id back in the queue's window, for what is
    left of its five minutes (counted from when the message was stored).

    The window lives in memory; without this, a send stored just before a
    crash and retried by its client after the restart (it never got the
    answer) was stored twice. Only messages still in the queue are seen: one
    deleted before the restart is not, so its retry is stored again."""
    deduplicator = settings.deduplicator

    def group_of(message: Message) -> str | None:
        headers = message.headers
        if not headers:
            return None
        group = headers.get(GROUP_HEADER)
        deduplication_id = headers.get(DEDUPLICATION_HEADER)
        sequence = headers.get(SEQUENCE_HEADER)
        if group and deduplication_id and sequence:
            key = (
                f"{group}\n{deduplication_id}"
                if settings.deduplication_per_group
                else deduplication_id
            )
            sent = Sent(message_id_of(headers, ""), sequence)
            deduplicator.remember(key, message.published_at / 1000 - epoch_offset, sent)
        return group

    return group_of


def _translate(error: BrokerError) -> SqsError:
    """A core error as the SQS error that means the same."""
    if isinstance(error, NotFound):
        return queue_does_not_exist(error.message)
    if isinstance(error, Conflict):
        return queue_name_exists(str(error.details.get("queue", "")), "its attributes")
    if isinstance(error, Overflow | LimitExceeded):  # a full queue; too many queues
        return SqsError("OverLimit", error.message, status=403)
    if isinstance(error, BadRequest | InvalidName | TooLarge):
        return invalid_parameter(error.message)
    return broker_failure(error)


@dataclass(slots=True)
class _Prepared:
    """One validated send: the message, where and when it goes, its answer."""

    outgoing: _Outgoing
    delay: int
    answer: Answer
    #: FIFO queues: the message group and the deduplication key.
    group: str | None = None
    deduplication_key: str | None = None
    #: Bytes it counts as (body and attributes), against a batch's limit.
    size: int = 0


def _deduplicated(prepared: _Prepared, settings: QueueSettings, now: float) -> bool:
    """A FIFO send whose deduplication id was seen in the window: answer as the
    first one was answered (its id and sequence number), store nothing."""
    key = prepared.deduplication_key
    if key is None:
        return False
    sent = settings.deduplicator.find(key, now)
    if sent is None:
        return False
    prepared.answer["MessageId"] = sent.message_id
    prepared.answer["SequenceNumber"] = sent.sequence_number
    return True


def _remember(prepared: _Prepared, settings: QueueSettings, now: float) -> None:
    if prepared.deduplication_key is not None:
        answer = prepared.answer
        sent = Sent(answer["MessageId"], answer["SequenceNumber"])
        settings.deduplicator.remember(prepared.deduplication_key, now, sent)


def _prepare_send(params: dict[str, Any], settings: QueueSettings, wall_ms: int) -> _Prepared:
    """Validate one SendMessage (or batch entry); ``wall_ms`` seeds FIFO sequence numbers."""
    body = check_body(params.get("MessageBody"))
    attributes = parse_attributes(params.get("MessageAttributes"))
    trace = _trace_header(params.get("MessageSystemAttributes"))
    fifo_headers: dict[str, str] = {}
    group = deduplication_key = None
    if settings.fifo:
        group, deduplication_key, fifo_headers = _fifo_fields(params, body, settings, wall_ms)
    elif params.get("MessageDeduplicationId") is not None:
        raise invalid_parameter(
            "The request includes a parameter that is not valid for this queue type: "
            "MessageDeduplicationId is for FIFO queues."
        )
    delay = _integer(params, "DelaySeconds", 0, 900, settings.delay_seconds)
    encoded = body.encode()
    size = len(encoded) + sum(len(n) + v.size() for n, v in attributes.items())
    if size > settings.maximum_message_size:
        raise invalid_parameter(
            "One or more parameters are invalid. Reason: Message must be shorter than "
            f"{settings.maximum_message_size} bytes."
        )
    message_id, headers = to_headers(attributes, trace)
    headers.update(fifo_headers)
    answer: Answer = {"MessageId": message_id, "MD5OfMessageBody": md5_of_body(body)}
    if attributes:
        answer["MD5OfMessageAttributes"] = md5_of_attributes(attributes)
    if trace is not None:
        answer["MD5OfMessageSystemAttributes"] = md5_of_attributes(
            {"AWSTraceHeader": AttributeValue("String", string=trace)}
        )
    if settings.fifo:
        answer["SequenceNumber"] = headers[SEQUENCE_HEADER]
    return _Prepared(_Outgoing(encoded, headers), delay, answer, group, deduplication_key, size)


def _fifo_fields(
    params: dict[str, Any], body: str, settings: QueueSettings, wall_ms: int
) -> tuple[str, str, dict[str, str]]:
    """A FIFO send's group, deduplication key and the headers that keep them."""
    raw_group = params.get("MessageGroupId")
    if raw_group is None:
        raise missing_parameter("MessageGroupId")
    group = check_id(raw_group)
    if group is None:
        raise invalid_parameter("MessageGroupId must be 1 to 128 printable ASCII characters.")
    raw_id = params.get("MessageDeduplicationId")
    if raw_id is None:
        if not settings.content_based_deduplication:
            raise invalid_parameter(
                "The queue should either have ContentBasedDeduplication enabled or "
                "MessageDeduplicationId provided explicitly"
            )
        deduplication_id = content_deduplication_id(body)
    else:
        checked = check_id(raw_id)
        if checked is None:
            raise invalid_parameter(
                "MessageDeduplicationId must be 1 to 128 printable ASCII characters."
            )
        deduplication_id = checked
    if params.get("DelaySeconds") is not None:
        raise invalid_parameter(
            "Value for parameter DelaySeconds is invalid. Reason: The request include "
            "parameter that is not valid for this queue type."
        )
    key = f"{group}\n{deduplication_id}" if settings.deduplication_per_group else deduplication_id
    headers = {
        GROUP_HEADER: group,
        DEDUPLICATION_HEADER: deduplication_id,
        SEQUENCE_HEADER: settings.deduplicator.next_sequence_number(wall_ms),
    }
    return group, key, headers


def _trace_header(raw: object) -> str | None:
    """MessageSystemAttributes: SQS knows only AWSTraceHeader (a String)."""
    if raw is None:
        return None
    attributes = parse_attributes(raw, "MessageSystemAttributes") if raw else {}
    unknown = set(attributes) - {"AWSTraceHeader"}
    if unknown:
        raise invalid_parameter(f"Message system attribute name {sorted(unknown)[0]!r} is invalid.")
    value = attributes.get("AWSTraceHeader")
    if value is None:
        return None
    if value.data_type != "String" or value.string is None:
        raise invalid_parameter("AWSTraceHeader must be a String attribute.")
    return value.string


def _batch_entries(params: dict[str, Any]) -> list[dict[str, Any]]:
    entries = params.get("Entries")
    if not entries:
        raise batch_error("EmptyBatchRequest", "There should be at least one entry in the request.")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise invalid_parameter("Entries must be a list of entries.")
    if len(entries) > MAX_BATCH_ENTRIES:
        raise batch_error(
            "TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {MAX_BATCH_ENTRIES}. "
            f"You have sent {len(entries)}.",
        )
    seen: set[str] = set()
    for entry in entries:
        entry_id = entry.get("Id")
        if not isinstance(entry_id, str) or not _BATCH_ID.match(entry_id):
            raise batch_error(
                "InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and "
                "underscores. It can be at most 80 letters long.",
            )
        if entry_id in seen:
            raise batch_error("BatchEntryIdsNotDistinct", f"Id {entry_id} repeated.")
        seen.add(entry_id)
    return entries


def _each_entry(entries: list[dict[str, Any]], action: Callable[[dict[str, Any]], None]) -> Answer:
    successful: list[Answer] = []
    failed: list[Answer] = []
    for entry in entries:
        try:
            action(entry)
        except SqsError as exc:
            failed.append(_failure(entry["Id"], exc))
        except BrokerError as exc:
            failed.append(_failure(entry["Id"], _translate(exc)))
        else:
            successful.append({"Id": entry["Id"]})
    return {"Successful": successful, "Failed": failed}


def _failure(entry_id: str, error: SqsError) -> Answer:
    return {
        "Id": entry_id,
        "SenderFault": error.sender_fault,
        "Code": error.query_code,
        "Message": error.message,
    }


def _integer(params: dict[str, Any], name: str, low: int, high: int, default: int) -> int:
    value = _optional_integer(params, name, low, high)
    return default if value is None else value


def _optional_integer(params: dict[str, Any], name: str, low: int, high: int) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    value = integer_of(raw)
    if value is None:
        raise invalid_parameter(f"Value {str(raw)[:50]} for parameter {name} is invalid.")
    if not low <= value <= high:
        raise invalid_parameter(
            f"Value {raw} for parameter {name} is invalid. Reason: Must be between "
            f"{low} and {high}, if provided."
        )
    return value


def _string_list(raw: object, name: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise invalid_parameter(f"{name} must be a list of strings.")
    return raw


def _string_map(raw: object, name: str) -> dict[str, str]:
    """A map of strings (Attributes, Tags). A value of another JSON type is the
    SerializationException AWS's JSON protocol answers, never converted."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid_parameter(f"{name} must be a map of strings.")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise SqsError(
                "SerializationException",
                f"{name}[{key[:100]!r}]: {_json_type(value)} can not be converted to a String",
            )
    return raw


def _json_type(value: object) -> str:
    """How AWS's JSON deserializer names a value it expected to be a string."""
    if isinstance(value, bool):
        return "TRUE_VALUE" if value else "FALSE_VALUE"
    if isinstance(value, int | float):
        return "NUMBER_VALUE"
    if value is None:
        return "NULL_VALUE"
    return "Start of structure or list" if isinstance(value, dict | list) else "A value"


def _tags(raw: object) -> dict[str, str]:
    tags = _string_map(raw, "Tags")
    if len(tags) > MAX_TAGS:
        raise invalid_parameter(f"Too many tags: a queue has at most {MAX_TAGS}.")
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise invalid_parameter("Tag keys are 1 to 128 characters, values at most 256.")
    return tags


def _comparable(settings: QueueSettings) -> tuple[object, ...]:
    """What CreateQueue compares on an existing queue (not timestamps or tags)."""
    return (
        settings.fifo,
        settings.delay_seconds,
        settings.receive_wait_seconds,
        settings.maximum_message_size,
        settings.stored,
    )
