"""Every frame of the minibroker wire protocol, one frame class each.

A frame class (:mod:`~minibroker.protocol.frame_class`) is typed like a
frozen dataclass and costs a plain class to define, which keeps start-up
short. On the wire a frame is a msgpack map; its ``op`` key names the class
and the other keys are its fields (absent and nil mean "use the default").
This file is the protocol's single source of truth: docs/protocol.md
describes these same classes, and a test checks that every op here is
documented there.

Three families:

* requests (client -> server) carry ``id``, a client-chosen unsigned integer
  echoed by the response, so requests can be pipelined;
* responses (server -> client): ``ok`` with a ``result`` or ``error`` with a
  stable ``code``; exactly one per request;
* pushes (server -> client) carry ``sub``, the subscription they belong to.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from minibroker.protocol.frame_class import Frame
from minibroker.protocol.schema import compile_decoder

PROTOCOL_VERSION = 1

#: Optional forms of version 1 this broker understands, announced in the
#: ``hello`` result (``extensions``): a client uses a form only when its
#: broker names it, so either side may be older (docs/protocol.md).
EXTENSIONS: tuple[str, ...] = ("put.bare", "fetch.compact", "request.cancel", "read.batches")

StartSpec = int | str


# --------------------------------------------------------------- shared parts
#
# Parts of a batch: a batch decodes one per message. Nothing mutates them
# after decoding.


class MessageIn(Frame):
    """A message as a client sends it (queue put, topic publish)."""

    body: bytes
    headers: dict[str, str] | None = None


class RecordIn(Frame):
    """A log record as a client sends it; the broker adds offset and timestamp."""

    body: bytes
    key: bytes | None = None
    headers: dict[str, str] | None = None


# ------------------------------------------------------------------- requests


class Request(Frame):
    """Base of client requests: ``id`` is echoed by the single response."""

    op: ClassVar[str] = ""
    id: int


class Hello(Request):
    """First frame on every connection: version check, authentication, namespace."""

    op: ClassVar[str] = "hello"
    version: int
    client: str = ""
    token: str | None = None
    namespace: str | None = None


class Ping(Request):
    """Round trip with optional payload, echoed back as the result."""

    op: ClassVar[str] = "ping"
    data: bytes | None = None


# queues


class QueueDeclare(Request):
    op: ClassVar[str] = "queue.declare"
    queue: str
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: Literal["reject_publish", "drop_head"] = "reject_publish"
    message_ttl: float | None = None
    visibility_timeout: float = 30.0
    max_deliveries: int | None = None
    dead_letter_queue: str | None = None
    durable: bool = False


class QueueDelete(Request):
    op: ClassVar[str] = "queue.delete"
    queue: str


class NamespaceDrop(Request):
    """Delete a namespace and everything in it; its connections are closed."""

    op: ClassVar[str] = "namespace.drop"
    namespace: str


class QueuePurge(Request):
    op: ClassVar[str] = "queue.purge"
    queue: str


class QueueList(Request):
    op: ClassVar[str] = "queue.list"


class QueueStats(Request):
    op: ClassVar[str] = "queue.stats"
    queue: str


class QueueInspect(Request):
    """Test hook: list the ready and in-flight messages of a queue."""

    op: ClassVar[str] = "queue.inspect"
    queue: str
    limit: int = 1000


class Put(Request):
    """Put messages: each a ``MessageIn`` map, or a bare body (no headers),
    which is smaller on the wire and cheaper on both sides (``put.bare``)."""

    op: ClassVar[str] = "put"
    queue: str
    messages: list[MessageIn | bytes]


class Fetch(Request):
    op: ClassVar[str] = "fetch"
    queue: str
    max_messages: int = 1
    wait: float = 0.0
    visibility_timeout: float | None = None
    #: True: answer with one compact map of columns instead of a map per
    #: delivery (``fetch.compact``); an older broker ignores the field.
    compact: bool = False


class FetchCancel(Request):
    """Withdraw this connection's parked ``fetch`` whose request id is ``fetch``:
    it is answered at once with an empty list (a consumer that leaves)."""

    op: ClassVar[str] = "fetch.cancel"
    queue: str
    fetch: int


class Ack(Request):
    op: ClassVar[str] = "ack"
    queue: str
    deliveries: list[int]


class Nack(Request):
    op: ClassVar[str] = "nack"
    queue: str
    deliveries: list[int]
    requeue: bool = True
    delay: float = 0.0


# topics


class Publish(Request):
    """Publish messages: each a ``MessageIn`` map, or a bare body (no headers),
    which is smaller on the wire and cheaper on both sides."""

    op: ClassVar[str] = "publish"
    topic: str
    messages: list[MessageIn | bytes]


class Subscribe(Request):
    op: ClassVar[str] = "subscribe"
    pattern: str
    group: str | None = None
    buffer: int = 10_000
    on_overflow: Literal["drop_oldest", "disconnect"] = "drop_oldest"
    #: None: the broker's default (16 MiB, or the per-connection limit if lower).
    buffer_bytes: int | None = None
    #: True: ``msg`` pushes may carry messages without headers as bare bodies
    #: (``Msg.topic``); an older broker ignores the field and sends maps.
    compact: bool = False


class Unsubscribe(Request):
    """Ends any push subscription: topic subscription, log tail or responder."""

    op: ClassVar[str] = "unsubscribe"
    sub: int


class Pause(Request):
    """Stop pushing to one subscription until ``resume``; nothing is dropped.

    A client whose buffer for a log tail or a responder is full sends it
    instead of stopping reading its socket, so the answers to its other
    calls (which travel behind the pushes) keep arriving (issue 14).
    """

    op: ClassVar[str] = "pause"
    sub: int


class Resume(Request):
    """Push to a paused subscription again, from where it stopped."""

    op: ClassVar[str] = "resume"
    sub: int


class Bind(Request):
    op: ClassVar[str] = "bind"
    queue: str
    pattern: str


class Unbind(Request):
    op: ClassVar[str] = "unbind"
    queue: str
    pattern: str


# logs


class LogCreate(Request):
    op: ClassVar[str] = "log.create"
    log: str
    retention_bytes: int | None = None
    retention_seconds: float | None = None
    segment_bytes: int | None = None


class LogDelete(Request):
    op: ClassVar[str] = "log.delete"
    log: str


class LogList(Request):
    op: ClassVar[str] = "log.list"


class LogStats(Request):
    op: ClassVar[str] = "log.stats"
    log: str


class Append(Request):
    """Append records: each a ``RecordIn`` map, or a bare body (no key, no headers),
    which is smaller on the wire and cheaper on both sides."""

    op: ClassVar[str] = "append"
    log: str
    records: list[RecordIn | bytes]


class Read(Request):
    """Read records. ``start`` is an offset or "earliest" / "latest" / "committed"
    (the group's committed offset); ``timestamp_ms``, when given, overrides it."""

    op: ClassVar[str] = "read"
    log: str
    start: int | str = "earliest"
    timestamp_ms: int | None = None
    group: str | None = None
    max_records: int = 1000
    max_bytes: int = 1_048_576
    wait: float = 0.0
    #: True: ``records`` may hold batches of entries as stored beside frames
    #: (``read.batches``); an older broker ignores the field and sends frames.
    batches: bool = False


class Tail(Request):
    """Push subscription: replay from ``start``, then follow new appends."""

    op: ClassVar[str] = "tail"
    log: str
    start: int | str = "latest"
    timestamp_ms: int | None = None
    group: str | None = None
    max_bytes: int = 1_048_576
    #: As :attr:`Read.batches`, for the ``records`` pushes.
    batches: bool = False


class Commit(Request):
    op: ClassVar[str] = "commit"
    log: str
    group: str
    offset: int


class Committed(Request):
    op: ClassVar[str] = "committed"
    log: str
    group: str


# request/reply


class Respond(Request):
    """Register as a responder for ``subject``; requests arrive as ``req`` pushes."""

    op: ClassVar[str] = "respond"
    subject: str
    group: str | None = None


class RequestCall(Request):
    """A synchronous call: the response is the responder's reply (or an error)."""

    op: ClassVar[str] = "request"
    subject: str
    body: bytes = b""
    headers: dict[str, str] | None = None
    timeout: float = 5.0


class Reply(Request):
    """A responder's answer to request ``rid``; ``error`` turns it into a failure."""

    op: ClassVar[str] = "reply"
    rid: int
    body: bytes = b""
    headers: dict[str, str] | None = None
    error: str | None = None
    #: False: no ``ok`` comes back (errors still do); the clients' default,
    #: one frame and one wake-up of the responder less per request.
    confirm: bool = True


class RequestCancel(Request):
    """Withdraw this connection's ``request`` whose request id is ``request``
    (its caller gave up): it is answered at once with ``cancelled``, and a
    responder's reply to it is dropped as a late one (``request.cancel``)."""

    op: ClassVar[str] = "request.cancel"
    request: int


# ------------------------------------------------------------------ responses


class Ok(Frame):
    """``result`` is always on the wire, nil when the operation returns nothing."""

    op: ClassVar[str] = "ok"
    id: int
    result: Any


class Error(Frame):
    """``id`` is nil when the error is about the connection, not one request."""

    op: ClassVar[str] = "error"
    code: str
    message: str
    id: int | None = None
    details: Any = None


# --------------------------------------------------------------------- pushes


class TopicMessage(Frame):
    """One message of a ``msg`` push; also what a client's subscription yields."""

    topic: str
    body: bytes
    headers: dict[str, str] | None = None


class Msg(Frame):
    """Topic messages for one subscription, in publish order.

    For a ``compact`` subscription, a message published to ``topic`` without
    headers travels as its bare body; the others are maps as always.
    """

    op: ClassVar[str] = "msg"
    sub: int
    messages: list[TopicMessage | bytes]
    topic: str | None = None


class Records(Frame):
    """Log records for a tail subscription, in the storage record format."""

    op: ClassVar[str] = "records"
    sub: int
    data: bytes
    count: int
    next_offset: int


class RequestOut(Frame):
    rid: int
    subject: str
    body: bytes
    headers: dict[str, str] | None = None
    timeout: float = 0.0


class Req(Frame):
    """Requests for a responder subscription."""

    op: ClassVar[str] = "req"
    sub: int
    requests: list[RequestOut]


class Notice(Frame):
    """A subscription lost ``dropped`` messages to its overflow policy."""

    op: ClassVar[str] = "notice"
    sub: int
    dropped: int


class End(Frame):
    """The broker ended a subscription (e.g. its log was deleted)."""

    op: ClassVar[str] = "end"
    sub: int
    code: str
    message: str


class Bye(Frame):
    """The server is closing this connection (shutdown, slow consumer, bad frame)."""

    op: ClassVar[str] = "bye"
    code: str
    message: str


REQUEST_TYPES: tuple[type[Request], ...] = (
    Hello,
    Ping,
    NamespaceDrop,
    QueueDeclare,
    QueueDelete,
    QueuePurge,
    QueueList,
    QueueStats,
    QueueInspect,
    Put,
    Fetch,
    FetchCancel,
    Ack,
    Nack,
    Publish,
    Subscribe,
    Unsubscribe,
    Pause,
    Resume,
    Bind,
    Unbind,
    LogCreate,
    LogDelete,
    LogList,
    LogStats,
    Append,
    Read,
    Tail,
    Commit,
    Committed,
    Respond,
    RequestCall,
    Reply,
    RequestCancel,
)

SERVER_FRAME_TYPES: tuple[Any, ...] = (Ok, Error, Msg, Records, Req, Notice, End, Bye)

#: op -> request class, for the server's decoder.
REQUESTS: dict[str, type[Request]] = {cls.op: cls for cls in REQUEST_TYPES}
#: op -> server frame class, for the clients' decoder.
SERVER_FRAMES: dict[str, Any] = {cls.op: cls for cls in SERVER_FRAME_TYPES}

class _Decoders(dict[str, Any]):
    """op -> compiled decoder, each compiled on first use: compiling them all
    would add tens of milliseconds to every start-up, for ops rarely seen."""

    def __missing__(self, op: str) -> Any:
        cls = REQUESTS.get(op) or SERVER_FRAMES.get(op)
        if cls is None:
            raise KeyError(op)
        decoder = self[op] = compile_decoder(cls)
        return decoder


DECODERS: dict[str, Any] = _Decoders()
