"""The metadata journal of a log on disk: its options and its consumer groups' offsets.

A log's records live in their own segmented store and may not carry anything
else (every record there takes an offset). What must survive a restart
besides the records, the options the log was created with and the offset
each consumer group committed, goes to a second, small store next to it,
opened through the same :class:`~minibroker.core.namespace.StorageOpener`
under the kind ``"log-meta"`` (``DATA_DIR/namespaces/<ns>/log-metas/<log>/``).
So the core still does no file I/O of its own, and the journal gets the
record format's CRCs and the store's crash recovery for free.

Records
-------

Each record is a storage entry whose key says what it is; bodies are JSON.

=======  =========================================  ==============================
key      body                                       meaning
=======  =========================================  ==============================
``O``    ``{"v": 1, "options": {...}}``             the log was created with these
                                                    options (first), or they were
                                                    changed (retention)
``C``    ``{"g": group, "o": offset}``              a consumer group committed
``F``    ``{"g": group}``                           the group's offset was deleted
                                                    (an older broker skips it: the
                                                    offset comes back there)
``T``    ``{"o": offset}``                          the log starts at ``offset``
                                                    (records below it were deleted:
                                                    Kafka's DeleteRecords)
``S``    ``{"v": 1, "options": {...},               a snapshot of the whole state
         "groups": {group: offset},                 (``start`` only once the log
         "start": offset}``                         start was moved)
=======  =========================================  ==============================

Replay applies the records in order: the last options win, commits and
snapshots set group offsets, deletions remove them, the highest start wins.
An older broker skips ``T`` and ignores ``start`` (the records below it,
where still stored, come back there). Unknown keys are skipped with a warning, so an
older broker can still open a newer journal.

Compaction
----------

Commits arrive all the time (a tail helper commits every few thousand
records), so the journal would grow forever. It is cut into small segments;
whenever an append starts a new one, a snapshot is appended right after it,
synced, and then every older segment is deleted (the store's size-based
retention with a limit of 0 keeps only the active segment). The active
segment then starts with a commit and a snapshot that holds everything, so
nothing replay needs is lost, and a crash at any point leaves either the old
segments or the synced snapshot. The journal stays below two segments.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from minibroker.core.log_options import LogOptions
from minibroker.errors import StorageError, StorageFull
from minibroker.log_store import Entry, LogStore

log = logging.getLogger("minibroker.logs")

#: The StorageOpener kind of metadata journals.
KIND: Final = "log-meta"
#: Segment size of a metadata journal: a commit record is about 50 bytes.
SEGMENT_BYTES: Final = 256 * 1024
FORMAT: Final = 1

TAG_OPTIONS: Final = b"O"
TAG_COMMIT: Final = b"C"
TAG_SNAPSHOT: Final = b"S"
TAG_FORGET: Final = b"F"
TAG_START: Final = b"T"


def _offset(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError("a start offset must be a non-negative integer")
    return value


def _json(value: dict[str, Any]) -> bytes:
    # json is imported here and in ``load``, on first use: a broker whose logs
    # never commit a group offset (and ``serve``'s start-up) need not load it.
    import json

    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class LogMeta:
    """Options and group offsets of one log, kept in a journal store."""

    def __init__(self, store: LogStore) -> None:
        self.store = store
        self.options: LogOptions | None = None
        self.groups: dict[str, int] = {}
        #: The log's start offset as last moved (0: never moved; the store's
        #: first offset may be past it, after retention).
        self.start_offset = 0
        #: Snapshots written (compactions), for tests and statistics.
        self.compactions = 0

    @classmethod
    def load(cls, store: LogStore) -> LogMeta:
        """Replay the journal in ``store``; damaged bodies raise StorageError."""
        import json

        meta = cls(store)
        for record in store.iter_records():
            try:
                meta._apply(record.key, json.loads(record.body))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise StorageError(
                    f"metadata record {record.offset} of a log is damaged: {exc}"
                ) from exc
        return meta

    def _apply(self, tag: bytes | None, body: dict[str, Any]) -> None:
        if tag == TAG_COMMIT:
            group, offset = body["g"], body["o"]
            if type(group) is not str or type(offset) is not int:
                raise ValueError("commit record has the wrong shape")
            self.groups[group] = offset
        elif tag == TAG_FORGET:
            group = body["g"]
            if type(group) is not str:
                raise ValueError("deletion record has the wrong shape")
            self.groups.pop(group, None)
        elif tag == TAG_START:
            self.start_offset = max(self.start_offset, _offset(body["o"]))
        elif tag == TAG_OPTIONS:
            self.options = LogOptions.from_dict(body["options"])
        elif tag == TAG_SNAPSHOT:
            self.options = LogOptions.from_dict(body["options"])
            groups = body["groups"]
            if not all(type(g) is str and type(o) is int for g, o in groups.items()):
                raise ValueError("snapshot record has the wrong shape")
            self.groups = dict(groups)
            self.start_offset = max(self.start_offset, _offset(body.get("start", 0)))
        else:
            log.warning("skipping a metadata record of unknown kind %r", tag)

    # ------------------------------------------------------------- writing

    def write_options(self, options: LogOptions, timestamp_ms: int) -> None:
        body = _json({"v": FORMAT, "options": options.to_dict()})
        previous, self.options = self.options, options
        try:
            self._append((TAG_OPTIONS, None, body), timestamp_ms)
        except BaseException:
            self.options = previous
            raise

    def write_commit(self, group: str, offset: int, timestamp_ms: int) -> None:
        """Journal a commit. The state is updated first so that a snapshot written
        by the same call includes it; a failed write restores it."""
        groups = self.groups
        previous = groups.get(group)
        groups[group] = offset
        try:
            self._append((TAG_COMMIT, None, _json({"g": group, "o": offset})), timestamp_ms)
        except BaseException:
            if previous is None:
                del groups[group]
            else:
                groups[group] = previous
            raise

    def write_forget(self, group: str, timestamp_ms: int) -> None:
        """Journal that ``group``'s offset is deleted (state first, as in write_commit)."""
        previous = self.groups.pop(group)
        try:
            self._append((TAG_FORGET, None, _json({"g": group})), timestamp_ms)
        except BaseException:
            self.groups[group] = previous
            raise

    def write_start(self, offset: int, timestamp_ms: int) -> None:
        """Journal that the log now starts at ``offset`` (state first, as in write_commit)."""
        previous, self.start_offset = self.start_offset, offset
        try:
            self._append((TAG_START, None, _json({"o": offset})), timestamp_ms)
        except BaseException:
            self.start_offset = previous
            raise

    def _append(self, entry: Entry, timestamp_ms: int) -> None:
        store = self.store
        store.append([entry], timestamp_ms)
        if store.segment_count > 1:
            try:
                self._compact(timestamp_ms)
            except (StorageError, StorageFull) as exc:
                # The record itself is written; compaction is retried on the next append.
                log.error("could not compact a log's metadata journal: %s", exc)

    def _compact(self, timestamp_ms: int) -> None:
        """Write a snapshot into the active segment, sync it, drop the older segments."""
        assert self.options is not None
        snapshot: dict[str, Any] = {
            "v": FORMAT,
            "options": self.options.to_dict(),
            "groups": self.groups,
        }
        if self.start_offset:
            snapshot["start"] = self.start_offset
        store = self.store
        store.append([(TAG_SNAPSHOT, None, _json(snapshot))], timestamp_ms)
        store.sync()
        store.enforce_retention(timestamp_ms, retention_bytes=0, retention_ms=None)
        self.compactions += 1
