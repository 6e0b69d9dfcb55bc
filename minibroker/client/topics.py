"""Topics for every client: ``publish``, ``publish_many``, ``subscribe``, ``bind``, ``unbind``.

What each promises, and how a subscription's buffer overflows on the
client (its ``buffer``, or ``max_pending``), is in docs/topics.md, "Clients"
and "Slow subscribers".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from minibroker.client.bodies import MessageItem, as_body, encode_messages, message_map
from minibroker.client.protocol import Call
from minibroker.client.pushes import Opening
from minibroker.protocol import frames

__all__ = [
    "OnOverflow",
    "PublishResult",
    "TopicMessage",
    "parse_messages",
]

OnOverflow = Literal["drop_oldest", "disconnect"]

#: Default number of messages a subscriber may fall behind (in the broker, and in the client).
DEFAULT_BUFFER = 10_000

#: A message received by a subscription: ``TopicMessage(topic, body, headers)``.
#: It is the ``msg`` frame's own item class, so the decoder builds each
#: received message once, and nothing converts it afterwards.
TopicMessage = frames.TopicMessage


@dataclass(frozen=True, slots=True)
class PublishResult:
    """How far a publish reached: copies handed to subscriptions and to bound queues.

    For a batch these are totals: 10 messages reaching 3 subscriptions give
    ``subscriptions == 30``; a group counts once per message. Zero for both
    means nobody was listening (topics keep nothing for absent subscribers).
    """

    subscriptions: int
    queues: int


def parse_messages(frame: frames.Msg, client: Any) -> list[TopicMessage]:
    """Items of one ``msg`` push frame (the subscription's push parser): the
    client's decoder has turned bare bodies into ``TopicMessage`` already."""
    return frame.messages  # type: ignore[return-value]


def _parse_publish(result: dict[str, int]) -> PublishResult:
    return PublishResult(result["subscriptions"], result["queues"])


def _publish(topic: str, messages: Sequence[dict[str, Any] | bytes]) -> Call[PublishResult]:
    return Call("publish", {"topic": topic, "messages": messages}, _parse_publish)


def publish_call(
    topic: str, body: bytes, headers: Mapping[str, str] | None = None
) -> Call[PublishResult]:
    """Publish one message to ``topic``; returns how many subscriptions and queues it reached.

    Raises InvalidName for a topic with wildcards, empty words or over-long names.
    """
    return _publish(topic, [message_map(body, headers) if headers else as_body(body)])


def publish_many_call(topic: str, messages: Iterable[MessageItem]) -> Call[PublishResult]:
    """Publish a batch to ``topic`` in one frame; returns the totals for the batch.

    Each item is a body, a ``(body, headers)`` pair, a ``{"body",
    "headers"}`` map or an object with ``body``/``headers`` (as ``put_many``).
    All or nothing: an invalid batch publishes none.
    """
    return _publish(topic, encode_messages(messages, "publish_many", bare=True))


def bind_call(queue: str, pattern: str) -> Call[bool]:
    """Copy messages published to topics matching ``pattern`` into ``queue``.

    Returns False if that binding existed already. The queue must exist;
    deleting it removes its bindings.
    """
    return Call("bind", {"queue": queue, "pattern": pattern}, lambda r: bool(r["created"]))


def unbind_call(queue: str, pattern: str) -> Call[bool]:
    """Remove a binding; returns False if there was none."""
    return Call("unbind", {"queue": queue, "pattern": pattern}, lambda r: bool(r["removed"]))


def subscribe_state(
    client: Any,
    pattern: str,
    *,
    group: str | None = None,
    buffer: int = DEFAULT_BUFFER,
    on_overflow: OnOverflow = "drop_oldest",
    buffer_bytes: int | None = None,
    callback: Callable[[TopicMessage], object] | None = None,
    max_pending: int | None = None,
) -> Opening[TopicMessage, TopicMessage]:
    """A subscription to ``pattern``: ``async with`` it and ``async for`` its
    TopicMessages (blocking client: ``with`` it, iterate it or ``get(timeout)``).

    ``*`` matches one word, ``#`` zero or more. Subscriptions with the same
    ``group`` share the stream (one member per message, round robin).
    ``buffer`` (messages) and ``buffer_bytes`` (None: the broker's
    default, 16 MiB) bound what the broker holds for this subscriber when
    it falls behind; ``on_overflow`` picks what happens then. The client
    holds up to ``buffer`` received messages too, unless ``max_pending``
    (here, or given to ``connect``) sets its own limit: past it the client
    applies ``on_overflow`` itself (docs/topics.md). With
    ``callback``, each message is handed to ``callback(message)`` on the
    client's reader instead (keep it quick: the reader reads nothing else
    meanwhile); the subscription then stays empty.
    """
    # compact: messages without headers arrive as bare bodies, decoded without
    # a map each (docs/protocol.md, ``msg``); an older broker ignores it.
    fields: dict[str, Any] = {
        "pattern": pattern,
        "buffer": buffer,
        "on_overflow": on_overflow,
        "compact": True,
    }
    if group is not None:
        fields["group"] = group
    if buffer_bytes is not None:
        fields["buffer_bytes"] = buffer_bytes
    call: Call[Any] = Call("subscribe", fields)
    return Opening(client, call, parse_messages, parse_messages, callback, max_pending)
