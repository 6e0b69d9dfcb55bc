"""The client half of the protocol, sans-I/O: requests out, events in.

A ``Call`` is one request: its op, its fields, and the parser of its ``ok``
result. ``ClientProtocol`` numbers requests, encodes them, and decodes
received frames into ``Reply``, ``Push`` and ``Goodbye`` events through the
frame classes the server encodes them from (protocol/frames.py), so a frame
that breaks the schema ends the connection with a clear error. It adopts the
frame limit the server advertises in its hello answer both ways: frames up
to that size are accepted, and a request above it raises ``TooLarge``
before anything is written (the broker would close a connection that sends
one, failing every later call).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from minibroker.errors import BadRequest, BrokerError, ConnectionClosed, TooLarge, error_from_code
from minibroker.protocol import frames
from minibroker.protocol.codec import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER_SIZE,
    RawFrameDecoder,
    pack_frame,
)
from minibroker.protocol.frames import PROTOCOL_VERSION, SERVER_FRAMES
from minibroker.value_class import fields

T = TypeVar("T")

#: Why a connection ended when the broker simply closed it (end of stream).
CLOSED_BY_BROKER = "the broker closed the connection"


def _identity(result: Any) -> Any:
    return result


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request: ``op`` and ``fields`` go on the wire, ``parse`` reads the result.

    ``quiet``: the broker answers it only with an error, never with ``ok`` (a
    responder's ``reply`` with ``confirm`` false), so a transport that posts
    it keeps no pending entry waiting for an answer.

    ``withdraw``: for a call the broker parks (a ``request``, the blocking
    client's long-poll ``fetch``), the call that takes it back, given its
    request id, posted when its caller gives up before the answer
    (cancelled, timed out, interrupted); see ``Connection.withdraw``.

    ``give_back``: for a call whose answer holds something its caller must
    return if it gave up (a fetch's deliveries, to nack), what to do with
    that raw answer should it still come; see ``PendingCall._give_up``.
    """

    op: str
    fields: dict[str, Any]
    parse: Callable[[Any], T] = field(default=_identity)
    quiet: bool = False
    withdraw: Callable[[int], Call[Any]] | None = None
    give_back: Callable[[Any], None] | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to request ``id``: ``result`` on success, else ``error``."""

    id: int
    result: Any = None
    error: BrokerError | None = None


@dataclass(frozen=True, slots=True)
class Push:
    """A server push for subscription ``sub``; ``frame`` is its typed frame
    (``frames.Msg``, ``Records``, ``Req``, ``Notice`` or ``End``)."""

    sub: int
    op: str
    frame: Any


@dataclass(frozen=True, slots=True)
class Goodbye:
    """The server is closing the connection (or refused it) and says why."""

    error: BrokerError


Event = Reply | Push | Goodbye


def hello_call(client_name: str, token: str | None, namespace: str | None) -> Call[dict[str, Any]]:
    fields: dict[str, Any] = {"version": PROTOCOL_VERSION, "client": client_name}
    if token is not None:
        fields["token"] = token
    if namespace is not None:
        fields["namespace"] = namespace
    return Call("hello", fields)


class ClientProtocol:
    """Request numbering, framing and event decoding for one connection."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._decoder = RawFrameDecoder(max_frame_bytes)
        self._next_id = 1
        #: The id of the hello request whose answer carries the server's limits.
        self._hello_id: int | None = None
        #: The largest frame the server accepts (its advertised limit; None before hello).
        self.send_limit: int | None = None
        #: The optional protocol forms the server announced in hello (``extensions``,
        #: frames.EXTENSIONS): a form is used only when its broker names it.
        self.extensions: frozenset[str] = frozenset()

    @property
    def max_frame_bytes(self) -> int:
        """The largest frame accepted from the server (raised by its hello answer)."""
        return self._decoder.max_frame_bytes

    def encode(self, call: Call[Any]) -> tuple[int, bytes]:
        """Give ``call`` a fresh request id; return it with the frame bytes.

        Raises ``TooLarge`` (and uses no id) if the frame exceeds the
        server's advertised limit: nothing is sent, the connection stays usable.
        """
        request_id = self._next_id
        frame = {"op": call.op, "id": request_id}
        frame.update(call.fields)
        data = pack_frame(frame)
        limit = self.send_limit
        if limit is not None and len(data) - HEADER_SIZE > limit:
            raise TooLarge(
                f"the {call.op!r} request is {len(data) - HEADER_SIZE} bytes, above the "
                f"broker's frame limit of {limit} bytes; nothing was sent. Split it into "
                "smaller batches (or start the broker with a larger --max-frame-bytes)",
                limit=limit,
                size=len(data) - HEADER_SIZE,
            )
        self._next_id += 1
        if call.op == "hello":
            self._hello_id = request_id
        return request_id, data

    def receive_data(self, data: bytes | bytearray) -> list[Event]:
        """Decode every complete frame in ``data`` into events."""
        self._decoder.receive_data(data)
        events: list[Event] = []
        for frame in self._decoder.values():
            event = _to_event(frame)
            if type(event) is Reply and event.id == self._hello_id:
                # Before the next frame is decoded: it may already be a big one.
                self.adopt_server_limits(event.result)
            events.append(event)
        return events

    def adopt_server_limits(self, server_info: object) -> None:
        """Take the server's advertised ``limits.max_frame_bytes`` and ``extensions``.

        The limit becomes ``send_limit`` (what this client may send), and the
        decoder's limit if it is larger: a server advertising less than this
        client's limit still gets the client's for what it sends (it never
        sends more than it advertises). Anything malformed is ignored.
        """
        self._hello_id = None
        if not isinstance(server_info, dict):
            return
        extensions = server_info.get("extensions")
        if isinstance(extensions, list):
            self.extensions = frozenset(e for e in extensions if type(e) is str)
        limits = server_info.get("limits")
        advertised = limits.get("max_frame_bytes") if isinstance(limits, dict) else None
        if type(advertised) is not int or advertised <= 0:
            return
        self.send_limit = advertised
        if advertised > self._decoder.max_frame_bytes:
            self._decoder.max_frame_bytes = advertised


def _to_event(value: Any) -> Event:
    """One received frame as an event, decoded through its frame class.

    An ``ok`` with an integer ``id`` (every answer to a call, a request/reply
    call's reply among them) becomes its ``Reply`` directly: what the ``Ok``
    frame class gives for it, without building the frame (a property test
    checks the two agree).
    """
    if type(value) is not dict:
        return Goodbye(BrokerError("server sent a frame that is not a map"))
    op = value.get("op")
    if op == "ok":
        request_id = value.get("id")
        if type(request_id) is int:
            return Reply(request_id, value.get("result"))
    decode = _SERVER_DECODERS.get(op) if type(op) is str else None
    if decode is None:
        if op not in SERVER_FRAMES:
            return Goodbye(BrokerError(f"server sent a frame of unknown op {op!r}"))
        # Compiled on first use, like the server's request decoders.
        decode = _SERVER_DECODERS[op] = frames.DECODERS[op]
    try:
        frame = decode(value, "")
    except BrokerError as exc:
        return Goodbye(BrokerError(f"server sent an invalid {op!r} frame: {exc.message}"))
    kind = type(frame)
    if kind is frames.Ok:
        return Reply(frame.id, frame.result)
    if kind is frames.Error:
        error = error_from_code(frame.code, frame.message, frame.details)
        if frame.id is None:
            return Goodbye(error)
        return Reply(frame.id, error=error)
    if kind is frames.Bye:
        return Goodbye(error_from_code(frame.code, frame.message))
    return Push(frame.sub, str(op), frame)


_new = object.__new__


def decode_msg(raw: dict[Any, Any], path: str = "") -> frames.Msg:
    """Decode a ``msg`` push: the common shape fast, anything else the generic way.

    A subscriber decodes one message per item, the fan-out hot path of a
    client. A compact push (the Python clients subscribe with ``compact``)
    names its ``topic`` once and carries the messages published to it
    without headers as bare bodies; both decoders turn every item into a
    ``TopicMessage``, so the subscription yields one type whatever the form.
    The result equals the generic decoder's (a property test checks it,
    errors included).
    """
    sub = raw.get("sub")
    items = raw.get("messages")
    topic = raw.get("topic")
    if type(sub) is not int or type(items) is not list:
        return _generic_msg(raw, path)
    if topic is not None and type(topic) is not str:
        return _generic_msg(raw, path)
    messages: list[frames.TopicMessage | bytes] = []
    add = messages.append
    message_type = frames.TopicMessage
    message: Any
    # The slots are set directly (a specialised store each), without a call
    # to __init__: the same TopicMessage at a third of the cost.
    for item in items:
        message = _new(message_type)
        if type(item) is bytes and topic is not None:
            message.topic = topic
            message.body = item
            message.headers = None
        elif type(item) is dict:
            message.topic = item_topic = item.get("topic")
            message.body = body = item.get("body")
            message.headers = headers = item.get("headers")
            if (
                type(item_topic) is not str
                or type(body) is not bytes
                or (headers is not None and not _is_str_map(headers))
            ):
                return _generic_msg(raw, path)
        else:  # a bare body without a topic, or not a message at all
            return _generic_msg(raw, path)
        add(message)
    return frames.Msg(sub, messages, topic)


def _is_str_map(value: object) -> bool:
    if type(value) is not dict:
        return False
    return all(type(k) is str and type(v) is str for k, v in value.items())


def _generic_msg(raw: dict[Any, Any], path: str) -> frames.Msg:
    """The schema decoder's ``Msg``, with each bare body turned into its ``TopicMessage``."""
    decoded: frames.Msg = frames.DECODERS[frames.Msg.op](raw, path)
    messages = decoded.messages
    for index, item in enumerate(messages):
        if type(item) is bytes:
            if decoded.topic is None:
                raise BadRequest(
                    f"field '{path}messages[{index}]' is a bare body, but the frame has no 'topic'"
                )
            messages[index] = frames.TopicMessage(decoded.topic, item)
    return decoded


_generic_req = frames.DECODERS[frames.Req.op]
_set_rid = vars(frames.RequestOut)["rid"].__set__
_set_subject = vars(frames.RequestOut)["subject"].__set__
_set_body = vars(frames.RequestOut)["body"].__set__
_set_headers = vars(frames.RequestOut)["headers"].__set__
_set_timeout = vars(frames.RequestOut)["timeout"].__set__
#: What the generic decoder gives a request without ``timeout``.
_DEFAULT_REQUEST_TIMEOUT = float(
    next(f.default for f in fields(frames.RequestOut) if f.name == "timeout")  # type: ignore[arg-type]
)


def decode_req(raw: dict[Any, Any], path: str = "") -> frames.Req:
    """Decode a ``req`` push (requests for a responder): the shape the broker
    sends fast, anything else the generic way.

    A responder decodes one per request it answers. Each ``RequestOut`` is
    built with its slots set directly instead of through ``__init__``; the
    result equals the generic decoder's (a property test checks it, errors
    included).
    """
    sub = raw.get("sub")
    items = raw.get("requests")
    if type(sub) is not int or type(items) is not list:
        return _generic_req(raw, path)  # type: ignore[no-any-return]
    requests: list[frames.RequestOut] = []
    add = requests.append
    request_type = frames.RequestOut
    for item in items:
        if type(item) is not dict:
            return _generic_req(raw, path)  # type: ignore[no-any-return]
        rid = item.get("rid")
        subject = item.get("subject")
        body = item.get("body")
        headers = item.get("headers")
        timeout = item.get("timeout")
        if (
            type(rid) is not int
            or type(subject) is not str
            or type(body) is not bytes
            or (headers is not None and not _is_str_map(headers))
            or (timeout is not None and type(timeout) is not float)
        ):
            return _generic_req(raw, path)  # type: ignore[no-any-return]
        request = _new(request_type)
        _set_rid(request, rid)
        _set_subject(request, subject)
        _set_body(request, body)
        _set_headers(request, headers)
        _set_timeout(request, _DEFAULT_REQUEST_TIMEOUT if timeout is None else timeout)
        add(request)
    return frames.Req(sub, requests)


#: op -> decoder of the frames a server sends, filled on first use: the
#: compiled schema decoders, and the fast paths of ``msg`` and ``req``.
_SERVER_DECODERS: dict[str, Callable[[dict[Any, Any], str], Any]] = {
    frames.Msg.op: decode_msg,
    frames.Req.op: decode_req,
}


def connection_lost(reason: str) -> ConnectionClosed:
    return ConnectionClosed(f"connection to the broker lost: {reason}")
