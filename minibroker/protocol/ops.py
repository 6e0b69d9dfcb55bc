"""The native protocol's wiring, in two tables: every request op, every push source.

``OPS`` gives each request op its frame class, its decoder, its handler and
its permission; ``PUSH_ENCODERS`` gives each kind of push source the function
that drains it into frames. Nothing registers itself at import: an op is
served exactly when it has a row here, and a reader finds every op's code
from this page.

* decoder: the frame class's compiled schema decoder (schema.py), unless the
  row names a hand-written fast path, which must accept and refuse exactly
  what the generic decoder does (a property test checks ``append``'s);
* handler: ``(session, frame, now) -> result``, ``now`` being the time on the
  shell's clock when the frame arrived; it returns the ``ok`` result, or
  ``PARKED`` when the core will answer later;
* permission: what access.permissions requires of the op (its ``NEEDS``,
  ``OPEN``, ``ADMIN_OF_EVERYTHING`` tables, which the HTTP front end shares);
  an op in none of them is refused to everyone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from minibroker.access.permissions import Permission, permission_for
from minibroker.core.log_readers import LogTail
from minibroker.core.rpc import Responder
from minibroker.core.topics import TopicSubscription
from minibroker.protocol import frames
from minibroker.protocol.handlers import base, logs, namespaces, queues, rpc, topics

if TYPE_CHECKING:
    from minibroker.protocol.session import Session

Decoder = Callable[[dict[Any, Any], str], Any]
Handler = Callable[["Session", Any, float], Any]
#: (source, byte budget) -> (frame bytes, source still has more to send)
PushEncoder = Callable[[Any, int], tuple[bytes, bool]]


class Op:
    """One row of the op table."""

    __slots__ = ("decode", "frame", "handle", "name", "permission")

    def __init__(
        self, frame: type[frames.Request], handle: Handler, decode: Decoder | None = None
    ) -> None:
        self.name: str = frame.op
        self.frame = frame
        #: None: the compiled schema decoder, built on first use (frames.DECODERS).
        self.decode = decode
        self.handle = handle
        self.permission: Permission = permission_for(frame.op)


OPS: dict[str, Op] = {
    op.name: op
    for op in (
        # connection
        Op(frames.Hello, base.hello),
        Op(frames.Ping, base.ping),
        Op(frames.Unsubscribe, base.unsubscribe),
        Op(frames.Pause, base.pause),
        Op(frames.Resume, base.resume),
        Op(frames.NamespaceDrop, namespaces.drop),
        # queues
        Op(frames.QueueDeclare, queues.declare),
        Op(frames.QueueDelete, queues.delete),
        Op(frames.QueuePurge, queues.purge),
        Op(frames.QueueList, queues.list_queues),
        Op(frames.QueueStats, queues.stats),
        Op(frames.QueueInspect, queues.inspect),
        Op(frames.Put, queues.put, decode=queues.decode_put),
        Op(frames.Fetch, queues.fetch),
        Op(frames.FetchCancel, queues.fetch_cancel),
        Op(frames.Ack, queues.ack),
        Op(frames.Nack, queues.nack),
        # topics
        Op(frames.Publish, topics.publish, decode=topics.decode_publish),
        Op(frames.Subscribe, topics.subscribe),
        Op(frames.Bind, topics.bind),
        Op(frames.Unbind, topics.unbind),
        # logs
        Op(frames.LogCreate, logs.log_create),
        Op(frames.LogDelete, logs.log_delete),
        Op(frames.LogList, logs.log_list),
        Op(frames.LogStats, logs.log_stats),
        Op(frames.Append, logs.append, decode=logs.decode_append),
        Op(frames.Read, logs.read),
        Op(frames.Tail, logs.tail),
        Op(frames.Commit, logs.commit),
        Op(frames.Committed, logs.committed),
        # request/reply
        Op(frames.Respond, rpc.respond),
        Op(frames.RequestCall, rpc.request),
        Op(frames.Reply, rpc.reply),
        Op(frames.RequestCancel, rpc.request_cancel),
    )
}

PUSH_ENCODERS: dict[type, PushEncoder] = {
    TopicSubscription: topics.encode_messages,
    LogTail: logs.encode_records,
    Responder: rpc.encode_requests,
}


class _RequestDecoders(dict[str, Decoder]):
    """op -> the decoder its row names, the compiled one fetched on first use."""

    def __missing__(self, op: str) -> Decoder:
        row = OPS[op]
        decoder = self[op] = row.decode or frames.DECODERS[op]
        return decoder


#: What the session's FrameDecoder decodes requests with.
REQUEST_DECODERS: dict[str, Decoder] = _RequestDecoders()
