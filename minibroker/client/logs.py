"""Logs for every client: create, append, read, tail, commit (event replay).

Reads and tails hand over the broker's stored bytes untouched: record
frames, and (the client asks for them with ``batches``: ``read.batches``,
docs/protocol.md) whole batches of entries as appends stored them. The
client decodes both with :func:`minibroker.record_format.decode_stored`,
which checks every frame's CRC and every batch's, so corruption anywhere
between the disk and the caller is detected. The tail helper's group commits (at-least-once:
every ``commit_every`` processed records, whenever it is about to wait, and
on exit) are described in docs/logs.md, "Consumer groups".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from typing import Any, NamedTuple, NoReturn

from minibroker.client.bodies import as_body
from minibroker.client.flavours import Awaiting, Blocking, Flow, waits
from minibroker.client.protocol import Call
from minibroker.client.pushes import BlockingIteration, SubscriptionEnded
from minibroker.errors import BrokerError, ConnectionClosed, OffsetOutOfRange
from minibroker.log_store import Record
from minibroker.protocol import frames
from minibroker.record_format import decode_stored

__all__ = [
    "AsyncLogTail",
    "GroupLag",
    "LogStats",
    "Record",
    "Start",
    "SyncLogTail",
    "parse_records",
]

#: An offset, or "earliest", "latest" or "committed" (a group's committed offset).
Start = int | str
#: Default records per read, and default bytes per read or tail push.
DEFAULT_MAX_RECORDS = 1000
DEFAULT_MAX_BYTES = 1024 * 1024
#: Processed records between two commits of the tail helper.
DEFAULT_COMMIT_EVERY = 1000

#: What ``append_many`` accepts per record: a body, a ``(body, key)`` or
#: ``(body, key, headers)`` tuple, a ``{"body", "key"?, "headers"?}`` map, or
#: any object with a ``body`` attribute (and optional ``key``/``headers``),
#: such as a Record read from another log.
RecordItem = bytes | tuple[Any, ...] | Mapping[str, Any] | Any


@dataclass(frozen=True, slots=True)
class GroupLag:
    """A consumer group's committed offset and how many records it is behind."""

    committed: int
    lag: int


@dataclass(frozen=True, slots=True)
class LogStats:
    """``log_stats``: where a log starts and ends, its size and its groups."""

    first_offset: int
    next_offset: int
    #: End of what readers can see (equals next_offset once the last append is stored).
    high_watermark: int
    records: int
    bytes: int
    segments: int
    groups: dict[str, GroupLag]
    options: dict[str, Any]
    tails: int
    waiting_reads: int


def _parse_stats(result: dict[str, Any]) -> LogStats:
    fields = {name: result[name] for name in _STATS_FIELDS}
    fields["groups"] = {g: GroupLag(v["committed"], v["lag"]) for g, v in fields["groups"].items()}
    return LogStats(**fields)


_STATS_FIELDS = tuple(f.name for f in dataclass_fields(LogStats))


def records_from_bytes(data: bytes) -> list[Record]:
    """Decode the stored bytes of a read or push, checking every CRC.

    Replay speed is decoding speed: a batch of entries is one CRC and one
    msgpack unpack, its records built in C; frames are one loop building
    NamedTuple records (``decode_records_fast``). Both trust the CRC rather
    than re-checking every field's type. An older broker, which ignores
    ``batches``, sends frames only: the same function reads them.
    """
    return decode_stored(data)


def parse_records(frame: frames.Records, client: Any) -> list[Record]:
    """Items of one ``records`` push frame (the tail subscription's push parser)."""
    return records_from_bytes(frame.data)


def _parse_read(result: dict[str, Any]) -> list[Record]:
    return records_from_bytes(result["records"])


def _encode_record(item: RecordItem) -> bytes | dict[str, Any]:
    """The wire form of one record: a bare body when it has no key or headers."""
    if type(item) is bytes:
        return item
    if isinstance(item, bytearray | memoryview | str):
        return as_body(item, "record bodies")
    if hasattr(item, "body"):  # a Record (itself a tuple) or any record-like object
        body = item.body
        key, headers = getattr(item, "key", None), getattr(item, "headers", None)
    elif isinstance(item, tuple):
        body, key, headers = (*item, None, None)[:3]
    elif isinstance(item, Mapping):
        body, key, headers = item["body"], item.get("key"), item.get("headers")
    else:
        raise TypeError(f"cannot append a {type(item).__name__}: give bytes, a tuple or a map")
    return record_map(body, key, headers)


def record_map(
    body: bytes, key: bytes | None, headers: Mapping[str, str] | None
) -> bytes | dict[str, Any]:
    body = as_body(body, "record bodies")
    if key is None and not headers:
        return body
    record: dict[str, Any] = {"body": body}
    if key is not None:
        record["key"] = as_body(key, "record keys")
    if headers:
        record["headers"] = dict(headers)
    return record


def _options(**options: Any) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


def list_logs_call() -> Call[list[str]]:
    """Names of the logs in this namespace, sorted."""
    return Call("log.list", {}, list)


def create_log_call(
    name: str,
    retention_bytes: int | None = None,
    retention_seconds: float | None = None,
    segment_bytes: int | None = None,
) -> Call[bool]:
    """Create log ``name``; True if created, False if it existed with the same options.

    Raises Conflict if it exists with other options.
    """
    fields = {"log": name}
    fields.update(
        _options(
            retention_bytes=retention_bytes,
            retention_seconds=retention_seconds,
            segment_bytes=segment_bytes,
        )
    )
    return Call("log.create", fields, lambda r: bool(r["created"]))


def delete_log_call(name: str) -> Call[int]:
    """Delete the log and its records; returns how many records it held."""
    return Call("log.delete", {"log": name}, lambda r: int(r["records"]))


def log_stats_call(name: str) -> Call[LogStats]:
    """Offsets, size, segments and consumer groups (committed offset, lag) of a log."""
    return Call("log.stats", {"log": name}, _parse_stats)


def first_offset(result: dict[str, Any]) -> int:
    return int(result["offset"])


def append_call(
    log: str, body: bytes, key: bytes | None = None, headers: Mapping[str, str] | None = None
) -> Call[int]:
    """Append one record; returns its offset once it is stored per the fsync policy."""
    return Call("append", {"log": log, "records": [record_map(body, key, headers)]}, first_offset)


def append_many_call(log: str, records: Iterable[RecordItem]) -> Call[int]:
    """Append a batch in one frame; returns the first offset (the rest follow densely).

    All or nothing: an invalid batch appends none of its records.
    """
    return Call("append", {"log": log, "records": encode_records(records)}, first_offset)


def encode_records(records: Iterable[RecordItem]) -> list[bytes | dict[str, Any]]:
    """The wire form of a batch of records (see ``RecordItem``)."""
    if isinstance(records, bytes | str):
        raise TypeError("append_many takes an iterable of records, not one body")
    return [_encode_record(r) for r in records]


def read_call(
    log: str,
    start: Start = "earliest",
    timestamp_ms: int | None = None,
    group: str | None = None,
    max_records: int = DEFAULT_MAX_RECORDS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    wait: float = 0.0,
) -> Call[list[Record]]:
    """Read up to ``max_records`` records (and about ``max_bytes``) from ``start``.

    ``start`` is an offset, "earliest", "latest" or "committed" (``group``'s
    committed offset; earliest if it never committed); ``timestamp_ms``
    starts at the first record stamped at or after it instead. With
    ``wait`` > 0 an empty read waits up to that many seconds for records.
    Raises OffsetOutOfRange (``details["first_offset"]``) below the first
    retained offset.
    """
    fields: dict[str, Any] = {
        "log": log,
        "start": start,
        "max_records": max_records,
        "max_bytes": max_bytes,
        "batches": True,
    }
    fields.update(_options(timestamp_ms=timestamp_ms, group=group))
    if wait:
        fields["wait"] = wait
    return Call("read", fields, _parse_read)


def tail_call(
    log: str, start: Start | None, timestamp_ms: int | None, group: str | None, max_bytes: int
) -> Call[dict[str, Any]]:
    if start is None:
        start = "committed" if group is not None else "latest"
    fields: dict[str, Any] = {"log": log, "start": start, "max_bytes": max_bytes, "batches": True}
    fields.update(_options(timestamp_ms=timestamp_ms, group=group))
    return Call("tail", fields)


def commit_call(log: str, group: str, offset: int) -> Call[None]:
    """Record that ``group`` will read ``log`` from ``offset`` next."""
    return Call("commit", {"log": log, "group": group, "offset": offset}, lambda r: None)


def committed_call(log: str, group: str) -> Call[int | None]:
    """The offset ``group`` committed (the next to read), or None."""
    return Call("committed", {"log": log, "group": group}, lambda r: r["offset"])


class TailPlan(NamedTuple):
    client: Any
    call: Call[dict[str, Any]]
    log: str
    group: str | None
    commit_every: int
    #: Records the client may hold unread (None: see pushes.SubscriptionCore._limit).
    max_pending: int | None = None


def tail_state(
    client: Any,
    log: str,
    start: Start | None = None,
    group: str | None = None,
    *,
    timestamp_ms: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    commit_every: int = DEFAULT_COMMIT_EVERY,
    max_pending: int | None = None,
) -> TailPlan:
    """Replay from ``start``, then follow new records live: ``async with
    mb.tail(log) as tail: async for r in tail`` (blocking: ``with``/``for``).

    ``start`` defaults to "committed" with a ``group`` (resume; earliest if
    the group never committed) and to "latest" without. With a group the
    helper commits as it goes and on exit. The client holds at most
    ``max_pending`` records not yet taken (else the ``max_pending`` given to
    ``connect``, else 10,000); past that it pauses the tail in the broker,
    which keeps only its cursor, so nothing is lost (docs/logs.md).
    """
    call = tail_call(log, start, timestamp_ms, group, max_bytes)
    return TailPlan(client, call, log, group, commit_every, max_pending)


class _TailState:
    """What a tail helper of either flavour knows: the subscription, and which
    offsets it has handed out, the caller processed, and the group committed.

    It never waits; ``AsyncLogTail`` and ``SyncLogTail`` wait around it.
    """

    def __init__(self, plan: TailPlan) -> None:
        self._client = plan.client
        self.log = plan.log
        self.group = plan.group
        self._commit_every = plan.commit_every
        self._context = plan.client._subscription(plan.call, parse_records, None, plan.max_pending)
        self._resumed = plan.call.fields["start"] == "committed"
        self._subscription: Any = None
        #: Offset after the last record handed to the caller, and after the last
        #: one the caller finished with (asked for the next one).
        self._handed_out = self._processed = 0
        self._committed: int | None = None
        self._since_commit = 0
        #: A commit sent without waiting (when the tail caught up), if any.
        self._in_flight: Any = None

    def _started(self, subscription: Any) -> None:
        """Subscribed: start counting from the offset the broker starts at."""
        self._subscription = subscription
        start_offset = int(subscription.info.get("offset", 0))
        self._handed_out = self._processed = start_offset
        # Resuming from the group's commit: that offset is committed already.
        self._committed = start_offset if self._resumed else None

    @property
    def position(self) -> int:
        """The offset of the next record this tail will hand out."""
        return self._handed_out

    @property
    def subscription(self) -> Any:
        """The underlying push subscription (``dropped``, ``ended``, ``sub_id``)."""
        return self._subscription

    def _finish_previous(self) -> bool:
        """What was handed out is processed now; True if a commit is due."""
        if self._processed != self._handed_out:
            self._since_commit += self._handed_out - self._processed
            self._processed = self._handed_out
        return self.group is not None and self._since_commit >= self._commit_every

    def _caught_up(self) -> None:
        """Nothing buffered: a good moment to save the position, without waiting
        (the consumer is about to wait for records anyway). Its answer is
        checked at the next commit, or on exit; one in flight at a time."""
        if self.group is None or self._processed == self._committed or not self._since_commit:
            return
        if self._in_flight is not None:
            if not self._in_flight.done:
                return  # the next commit (or the exit) covers this position
            self._settle()
        self._in_flight = self._client._begin(commit_call(self.log, self.group, self._processed))
        self._committed = self._processed
        self._since_commit = 0

    def _settle(self) -> None:
        """Collect the finished background commit; raises its error, if it failed."""
        pending, self._in_flight = self._in_flight, None
        pending.outcome()

    def _commit(self) -> Flow[None]:
        """Commit the offset after the last processed record for the group (if any)."""
        if self._in_flight is not None:
            if not self._in_flight.done:
                yield self._in_flight
            self._settle()
        if self.group is None or self._processed == self._committed:
            return
        offset = self._processed
        pending = self._client._begin(commit_call(self.log, self.group, offset))
        yield pending
        pending.outcome()
        self._committed = offset
        self._since_commit = 0

    commit = waits(_commit)

    def _handed(self, record: Record) -> Record:
        self._handed_out = record.offset + 1
        return record

    def _ended(self, error: BaseException) -> NoReturn:
        """The subscription ended with ``error``: a tail that fell behind
        retention raises OffsetOutOfRange rather than ending quietly."""
        ended = self._subscription.ended
        if isinstance(ended, SubscriptionEnded) and isinstance(ended.cause, OffsetOutOfRange):
            raise ended.cause from None
        raise error

    def _batch(self, first: Record, max_items: int) -> list[Record]:
        """``first`` and up to ``max_items - 1`` buffered records, handed out at once."""
        batch = [first]
        if max_items > 1:  # the rest in one call, not one get_nowait per record
            batch += self._subscription._take_buffered(max_items - 1)
        self._handed_out = batch[-1].offset + 1
        return batch

    def _commits_on_exit(self, completed: bool) -> bool:
        """Leaving: the last record counts as processed if the block completed;
        True if there is a group (and a connection) to commit for."""
        if completed:
            self._finish_previous()
        return self.group is not None and not getattr(self._client, "closed", False)

    @contextmanager
    def _tolerating(self, completed: bool) -> Iterator[None]:
        """The exit's commit: its failure is raised only if the block completed
        (leaving on an exception, that exception matters more)."""
        try:
            yield
        except (ConnectionClosed, BrokerError):
            if completed:
                raise


class AsyncLogTail(_TailState, Awaiting):
    """The records of a tail subscription: ``async for record in tail``.

    With a ``group`` the helper commits as it goes (see the module docstring);
    :meth:`commit` commits the current position explicitly.
    """

    def __aiter__(self) -> AsyncLogTail:
        return self

    async def __anext__(self) -> Record:
        if self._finish_previous():
            await self.commit()
        record: Record | None = self._subscription.get_nowait()
        if record is None:
            self._caught_up()
            try:
                record = await self._subscription.__anext__()
            except StopAsyncIteration as ended:
                self._ended(ended)
        return self._handed(record)

    async def get_batch(self, max_items: int = 1000) -> list[Record]:
        """Wait for at least one record, then return up to ``max_items`` at once.

        The whole batch counts as processed when the next one is asked for.
        """
        return self._batch(await self.__anext__(), max_items)

    async def __aenter__(self) -> AsyncLogTail:
        self._started(await self._context.__aenter__())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: Any) -> None:
        try:
            if self._commits_on_exit(exc_type is None):
                with self._tolerating(exc_type is None):
                    await self.commit()
        finally:
            await self._context.__aexit__(exc_type, *exc)


class SyncLogTail(_TailState, BlockingIteration[Record], Blocking):
    """The blocking client's tail: ``for record in tail`` (see :class:`AsyncLogTail`)."""

    def get(self, timeout: float | None = None) -> Record:
        """The next record; ``TimeoutError`` if none comes within ``timeout`` seconds,
        ``SubscriptionEnded`` once the tail ended (OffsetOutOfRange if it fell
        behind retention)."""
        if self._finish_previous():
            self.commit()
        record: Record | None = self._subscription.get_nowait()
        if record is None:
            self._caught_up()
            try:
                record = self._subscription.get(timeout)
            except SubscriptionEnded as ended:
                self._ended(ended)
        return self._handed(record)

    def get_batch(self, max_items: int = 1000, timeout: float | None = None) -> list[Record]:
        """Wait (up to ``timeout``) for at least one record, then return up to ``max_items``."""
        return self._batch(self.get(timeout), max_items)

    def __enter__(self) -> SyncLogTail:
        self._started(self._context.__enter__())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: Any) -> None:
        try:
            if self._commits_on_exit(exc_type is None):
                with self._tolerating(exc_type is None):
                    self.commit()
        finally:
            self._context.__exit__(exc_type, *exc)
