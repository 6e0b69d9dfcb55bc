"""The client half of the protocol, sans-I/O, shared by every Python client.

The Trio, asyncio, blocking and in-process clients differ only in how they
wait; what they send and how they read answers lives here:

* a ``Call`` is one request: its op, its fields, and the function that turns
  the ``ok`` result into what the API method returns. Each API method is a
  one-line wrapper around a Call, so the four clients cannot drift apart;
* ``ClientProtocol`` numbers requests, encodes frames, and turns received
  bytes into ``Reply`` and ``Push`` events. Received frames are decoded
  through the same frame classes the server encodes them from
  (protocol/frames.py, checked by their schema): a push carries its typed
  frame (``Msg``, ``Records``, ``Req``, ``Notice``, ``End``), and a frame
  that breaks the schema ends the connection with a clear error. It also reads the frame limit
  the server advertises in its hello answer and raises its own decoder
  limit to it, so a server started with a bigger ``--max-frame-bytes``
  than the client's default can send frames of that size. The same
  advertised limit bounds what the client sends: a request that would not
  fit raises ``TooLarge`` before anything is written, because the broker
  closes a connection that sends an oversized frame (it cannot skip a body
  it refuses to read), and every later call on the client would fail.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from minibroker.errors import BrokerError, ConnectionClosed, TooLarge, error_from_code
from minibroker.protocol import frames
from minibroker.protocol.codec import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER_SIZE,
    RawFrameDecoder,
    pack_frame,
)
from minibroker.protocol.frames import PROTOCOL_VERSION, SERVER_FRAMES

T = TypeVar("T")
P = ParamSpec("P")
F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S")
R = TypeVar("R")

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
    """

    op: str
    fields: dict[str, Any]
    parse: Callable[[Any], T] = field(default=_identity)
    quiet: bool = False


def awaiting(
    build: Callable[P, Call[T]],
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    """The async client method that sends the Call ``build`` makes and returns its result.

    ``build`` carries the method's signature and docstring, so the async and
    the blocking method (:func:`blocking`) are written once, and cannot drift.
    """

    async def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._call(build(*args, **kwargs))  # type: ignore[no-any-return]

    return _like(method, build)


def blocking(build: Callable[P, Call[T]]) -> Callable[Concatenate[Any, P], T]:
    """The blocking client method that sends the Call ``build`` makes (see :func:`awaiting`)."""

    def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._call(build(*args, **kwargs))  # type: ignore[no-any-return]

    return _like(method, build)


def opening(
    build: Callable[Concatenate[Any, P], S], kind: Callable[[S], R]
) -> Callable[Concatenate[Any, P], R]:
    """A client method that builds ``S`` (with the client and its arguments)
    and returns ``kind(S)``: the flavour's object around the shared state,
    such as an async or a blocking producer."""

    def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return kind(build(self, *args, **kwargs))

    return _like(method, build, add_self=False)


def _like(method: F, build: Callable[..., Any], add_self: bool = True) -> F:
    """Give ``method`` the name (less ``_call`` or ``_state``), docstring and signature (plus
    ``self``) of ``build``."""
    named: Any = method
    name = build.__name__.removesuffix("_call").removesuffix("_state")
    named.__name__ = named.__qualname__ = name
    named.__doc__ = build.__doc__
    signature = inspect.signature(build)
    parameters = list(signature.parameters.values())
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    named.__signature__ = signature.replace(
        parameters=[self, *parameters[0 if add_self else 1 :]],
        return_annotation=inspect.Signature.empty,
    )
    return method


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
        """Take the server's advertised ``limits.max_frame_bytes``.

        It becomes ``send_limit`` (what this client may send), and the
        decoder's limit if it is larger: a server advertising less than this
        client's limit still gets the client's for what it sends (it never
        sends more than it advertises). Anything malformed is ignored.
        """
        self._hello_id = None
        if not isinstance(server_info, dict):
            return
        limits = server_info.get("limits")
        advertised = limits.get("max_frame_bytes") if isinstance(limits, dict) else None
        if type(advertised) is not int or advertised <= 0:
            return
        self.send_limit = advertised
        if advertised > self._decoder.max_frame_bytes:
            self._decoder.max_frame_bytes = advertised


def _to_event(value: Any) -> Event:
    """One received frame as an event, decoded through its frame class."""
    if type(value) is not dict:
        return Goodbye(BrokerError("server sent a frame that is not a map"))
    op = value.get("op")
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


# Setting the slots directly builds the same TopicMessage without a call to __init__.
_new = object.__new__
_set_topic = vars(frames.TopicMessage)["topic"].__set__
_set_body = vars(frames.TopicMessage)["body"].__set__
_set_headers = vars(frames.TopicMessage)["headers"].__set__


def decode_msg(raw: dict[Any, Any], path: str = "") -> frames.Msg:
    """Decode a ``msg`` push: the common shape fast, anything else the generic way.

    A subscriber decodes one message per item, the fan-out hot path of a
    client; the result equals the generic decoder's (a property test checks
    it, errors included).
    """
    sub = raw.get("sub")
    items = raw.get("messages")
    if type(sub) is not int or type(items) is not list:
        return _generic_msg(raw, path)
    messages: list[frames.TopicMessage] = []
    add = messages.append
    message_type = frames.TopicMessage
    for item in items:
        if type(item) is not dict:
            return _generic_msg(raw, path)
        topic = item.get("topic")
        body = item.get("body")
        headers = item.get("headers")
        if (
            type(topic) is not str
            or type(body) is not bytes
            or (headers is not None and not _is_str_map(headers))
        ):
            return _generic_msg(raw, path)
        message = _new(message_type)
        _set_topic(message, topic)
        _set_body(message, body)
        _set_headers(message, headers)
        add(message)
    return frames.Msg(sub, messages)


def _is_str_map(value: object) -> bool:
    if type(value) is not dict:
        return False
    return all(type(k) is str and type(v) is str for k, v in value.items())


def _generic_msg(raw: dict[Any, Any], path: str) -> frames.Msg:
    decoded: frames.Msg = frames.DECODERS[frames.Msg.op](raw, path)
    return decoded


#: op -> decoder of the frames a server sends, filled on first use: the
#: compiled schema decoders, and ``msg``'s fast path.
_SERVER_DECODERS: dict[str, Callable[[dict[Any, Any], str], Any]] = {frames.Msg.op: decode_msg}


def connection_lost(reason: str) -> ConnectionClosed:
    return ConnectionClosed(f"connection to the broker lost: {reason}")
