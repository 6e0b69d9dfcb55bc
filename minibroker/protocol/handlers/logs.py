"""Log ops: ``log.create`` / ``log.delete`` / ``log.list`` / ``log.stats``, ``append``,
``read``, ``tail``, ``commit``, ``committed``, and the ``records`` push.

Wire shapes (see docs/logs.md and docs/protocol.md):

* ``log.create {log, retention_bytes?, retention_seconds?, segment_bytes?}``
  -> ``{"created": bool}`` (conflict if it exists with other options);
* ``log.delete {log}`` -> ``{"records": n}``; ``log.list`` -> ``[name, ...]``;
* ``log.stats {log}`` -> ``{"first_offset", "next_offset", "high_watermark",
  "records", "bytes", "segments", "groups": {group: {"committed", "lag"}},
  "options", "tails", "waiting_reads"}``;
* ``append {log, records: [{body, key?, headers?} | body]}`` -> ``{"offset":
  first, "count": n}``, sent once the records are stored per the fsync policy
  (a bare ``bin`` item is a record without key and headers);
* ``read {log, start?, timestamp_ms?, group?, max_records?, max_bytes?,
  wait?}`` -> ``{"records": bin, "count": n, "next_offset": k}``;
  ``records`` holds the storage record frames as they are on disk (decode
  them with ``minibroker.storage.decode_records``); ``max_bytes`` (of read
  and tail) is capped at what fits one frame (``read_budget``); with
  ``batches: true`` (``read.batches``, read and tail) it may also hold
  whole batches of entries as stored, header included
  (``minibroker.record_format.decode_stored`` reads both);
* ``tail {log, start?, timestamp_ms?, group?, max_bytes?}`` -> ``{"sub": id,
  "offset": start}``, then pushes ``{"op": "records", "sub", "data": bin,
  "count", "next_offset"}``;
* ``commit {log, group, offset}`` -> nil; ``committed {log, group}`` ->
  ``{"offset": n | nil}``.

Append fast path: the generic schema decoder checks each record through its
compiled checkers and builds each ``RecordIn`` through ``__init__``,
about 1.5-2 µs a record, more than storing it. So the ``append`` op gets a
decoder of its own that checks the common shape inline and sets the
``RecordIn`` slots directly, about a quarter of that (the op table in ops.py
names it as the op's decoder), and hands anything else (a text body, a bad
type) to the generic decoder, which converts it or produces the precise
error. A property test checks the two give equal results and equal errors on
arbitrary input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from minibroker.core.log_options import LogOptions
from minibroker.core.log_readers import LogTail
from minibroker.log_store import Entry, RecordBatch
from minibroker.protocol import codec, frames
from minibroker.protocol.handlers.messages import is_str_map
from minibroker.protocol.handlers.parked import PARKED

if TYPE_CHECKING:
    from minibroker.protocol.session import Session


# ---------------------------------------------------------------- append decoding


_generic_append_decoder = frames.DECODERS[frames.Append.op]
# Setting the slots directly builds the same RecordIn without a call to __init__.
_new_record = object.__new__
_set_body = vars(frames.RecordIn)["body"].__set__
_set_key = vars(frames.RecordIn)["key"].__set__
_set_headers = vars(frames.RecordIn)["headers"].__set__


def decode_append(raw: dict[Any, Any], path: str = "") -> frames.Append:
    """Decode an ``append`` map: the common shape fast, anything else the generic way.

    The result is the same ``frames.Append`` the generic decoder builds (a
    property test checks it); only the path to it is shorter.
    """
    log = raw.get("log")
    records = raw.get("records")
    request_id = raw.get("id")
    if type(log) is not str or type(records) is not list or type(request_id) is not int:
        return _generic_append_decoder(raw, path)  # type: ignore[no-any-return]
    if set(map(type, records)) == {bytes}:
        # Bare bodies only, what the clients send for plain records: the list
        # is the frame's as it is, checked in one pass at C speed.
        return frames.Append(request_id, log, records)
    decoded: list[frames.RecordIn | bytes] = []
    add = decoded.append
    record_type = frames.RecordIn
    for record in records:
        if type(record) is bytes:
            add(record)  # a bare body: nothing to check, nothing to build
            continue
        if type(record) is not dict:
            return _generic_append_decoder(raw, path)  # type: ignore[no-any-return]
        body = record.get("body")
        key = record.get("key")
        headers = record.get("headers")
        if (
            type(body) is not bytes
            or (key is not None and type(key) is not bytes)
            or (headers is not None and not is_str_map(headers))
        ):
            return _generic_append_decoder(raw, path)  # type: ignore[no-any-return]
        item = _new_record(record_type)
        _set_body(item, body)
        _set_key(item, key)
        _set_headers(item, headers)
        add(item)
    return frames.Append(request_id, log, decoded)


# ------------------------------------------------------------------- handlers


def encode_batch_result(batch: RecordBatch) -> dict[str, Any]:
    return {"records": batch.data, "count": batch.count, "next_offset": batch.next_offset}


def log_create(session: Session, frame: frames.LogCreate, now: float) -> dict[str, bool]:
    options = LogOptions(
        retention_bytes=frame.retention_bytes,
        retention_seconds=frame.retention_seconds,
        segment_bytes=frame.segment_bytes,
    )
    return {"created": session.ns.logs.create(frame.log, options, now)}


def log_delete(session: Session, frame: frames.LogDelete, now: float) -> dict[str, int]:
    return {"records": session.ns.logs.delete(frame.log, now)}


def log_list(session: Session, frame: frames.LogList, now: float) -> list[str]:
    return session.ns.logs.names()


def log_stats(session: Session, frame: frames.LogStats, now: float) -> dict[str, Any]:
    return session.ns.logs.statistics(frame.log).to_dict()


def append(session: Session, frame: frames.Append, now: float) -> dict[str, int]:
    records = frame.records
    entries: Sequence[Entry] = (
        records  # type: ignore[assignment]
        if set(map(type, records)) == {bytes}
        else [
            r if type(r) is bytes else (r.key, r.headers, r.body)  # type: ignore[union-attr]
            for r in records
        ]
    )
    first = session.ns.logs.append(frame.log, entries, now)
    return {"offset": first, "count": len(entries)}


def read_budget(session: Session, max_bytes: int) -> int:
    """``max_bytes`` capped at what one frame of this connection carries.

    ``max_bytes`` is a budget, not a promise: asking for more than a frame
    holds is not an error, the answer is simply cut at the frame limit (as
    Kafka's fetch size is bounded by what the broker sends at once). A
    non-positive value passes through for the core to refuse.
    """
    return min(max_bytes, session.frame_budget) if type(max_bytes) is int else max_bytes


def read(session: Session, frame: frames.Read, now: float) -> Any:
    logs = session.ns.logs
    max_bytes = read_budget(session, frame.max_bytes)
    batch = logs.read(
        frame.log,
        frame.start,
        frame.timestamp_ms,
        frame.group,
        frame.max_records,
        max_bytes,
        frame.wait,
        frame.batches is True,
    )
    if batch.count or frame.wait <= 0:
        return encode_batch_result(batch)
    token = session.park(frame.id, encode_batch_result)
    try:
        logs.wait_for_records(
            session,
            token,
            frame.log,
            batch.next_offset,
            frame.max_records,
            max_bytes,
            frame.wait,
            now,
            frame.batches is True,
        )
    except BaseException:
        session.unpark(token)
        raise
    return PARKED


def tail(session: Session, frame: frames.Tail, now: float) -> dict[str, int]:
    logs = session.ns.logs
    started: list[LogTail] = []

    def make(sub_id: int) -> LogTail:
        source = logs.tail(
            session,
            sub_id,
            frame.log,
            lambda error: session.end_subscription(sub_id, error),
            frame.start,
            frame.timestamp_ms,
            frame.group,
            read_budget(session, frame.max_bytes),
            frame.batches is True,
        )
        started.append(source)
        return source

    sub_id = session.add_subscription(make)
    return {"sub": sub_id, "offset": started[0].cursor}


def commit(session: Session, frame: frames.Commit, now: float) -> None:
    session.ns.logs.commit(frame.log, frame.group, frame.offset, now)


def committed(session: Session, frame: frames.Committed, now: float) -> dict[str, int | None]:
    return {"offset": session.ns.logs.committed(frame.log, frame.group)}


def encode_records(source: LogTail, budget: int) -> tuple[bytes, bool]:
    """One ``records`` frame of the tail's next chunk, within ``budget`` bytes."""
    batch = source.take(budget)
    if batch is None:
        return b"", False
    frame = frames.Records(source.sub_id, batch.data, batch.count, batch.next_offset)
    return codec.records(frame), source.has_more()
