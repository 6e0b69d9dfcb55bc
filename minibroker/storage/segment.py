"""One segment on disk: ``<base offset>.log`` holding frames, ``<base offset>.index`` indexing them.

Both file names are the segment's base offset as 20 zero-padded digits
(``00000000000000001000.log``), so a directory listing sorts in log order and
the base offset of every segment is known without opening it.

Four ways to get a segment, matching the states a segment can be in:

- :meth:`FileSegment.create`: a new, empty active segment;
- :meth:`FileSegment.open_sealed`: an older segment, written in full and
  fsynced when it was rolled over. It is trusted (not rescanned) but checked
  cheaply: its index must be well-formed and its last records must be valid
  and end exactly where the next segment begins. Failing that, it is scanned
  in full and its index rebuilt; if even that fails it is reported damaged;
- :meth:`FileSegment.recover`: the newest segment, which a crash may have
  left with a torn or corrupt tail. It is scanned record by record and cut
  back to the last valid one;
- :meth:`FileSegment.open_clean`: the newest segment of a log that was
  closed cleanly, described by the log's clean-shutdown marker (see
  :mod:`minibroker.storage.commitlog`). Its file was fsynced and its index
  written at close, so it is trusted like a sealed segment after the same
  cheap check, instead of scanned; if anything does not match, the caller
  falls back to :meth:`FileSegment.recover`.

The index of the active segment lives in memory and is written to its file
when the segment is sealed or closed; recovery only uses it after a clean
close (otherwise the newest segment is rescanned and its index rebuilt).

File descriptors: only the active segment keeps its file open (read-write),
because it is written all the time. A sealed segment gives its descriptor up
(:meth:`FileSegment.close_writer`) and borrows a read-only one from an
:class:`~minibroker.storage.fd_cache.FdCache` for each read, so the number of
open files does not grow with the number of segments.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import struct
import zlib
from bisect import bisect_left
from dataclasses import dataclass
from typing import Final

from minibroker.errors import StorageError, StorageFull
from minibroker.log_store import Record, StoredBatch
from minibroker.record_format import (
    ENTRIES_HEAD,
    MAX_FRAME_SIZE,
    MIN_FRAME_LENGTH,
    CorruptRecord,
    EncodedBatch,
    EncodedEntries,
    FrameScan,
    decode_fields,
    decode_records,
    entries_facts,
    frame_size_at,
    peek_offset,
    scan_frames,
)
from minibroker.storage import fileio
from minibroker.storage.batch import (
    BATCH_HEADER_SIZE,
    BATCH_MAGIC,
    KIND_ENTRIES,
    KIND_FRAMES,
    KIND_KAFKA,
    BatchScan,
    encode_batch_header,
    frames_through,
    is_kafka_header,
    is_unit_header,
    parse_batch_header,
    scan_batches,
    span_frames,
    starts_with_batch,
    stored_of,
    strip_batch_headers,
)
from minibroker.storage.checkpoint import SealedFacts
from minibroker.storage.fd_cache import FdCache
from minibroker.storage.index import SparseIndex
from minibroker.storage.kafka_batch import (
    STORED_HEAD_SIZE,
    base_offset_of,
    first_at_or_after,
    stored_facts,
    stored_head,
)

log = logging.getLogger("minibroker.storage")

#: Default spacing of sparse index entries, in bytes of log (Kafka's default too).
DEFAULT_INDEX_INTERVAL_BYTES: Final = 4096
LOG_SUFFIX: Final = ".log"
INDEX_SUFFIX: Final = ".index"

#: Bounds of one ``pread`` while stepping over frames during a read.
_MIN_WINDOW: Final = 4096
_MAX_WINDOW: Final = 1024 * 1024
_NO_LIMIT: Final = 1 << 62
_OPEN_FLAGS: Final = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
_LENGTH: Final = struct.Struct(">I")


class _KafkaBatchMet(Exception):
    """The frames-only fast path of a read reached a batch read whole (a Kafka batch or
    a batch of entries): take the general path."""


class _Window:
    """Bytes of a segment file starting at ``start``, fetched with one ``pread``."""

    __slots__ = ("data", "end", "start")

    def __init__(self, data: bytes, start: int) -> None:
        self.data = data
        self.start = start
        self.end = start + len(data)


def segment_file_name(base_offset: int, suffix: str) -> str:
    """``00000000000000000042.log`` for base offset 42."""
    return f"{base_offset:020d}{suffix}"


class FileSegment:
    """A segment file, its sparse index, and the facts about it kept in memory."""

    __slots__ = (
        "_closed",
        "_directory",
        "_failed",
        "_fd",
        "_fds",
        "_index",
        "_index_dirty",
        "_interval_bytes",
        "_log_path",
        "_unsynced",
        "base_offset",
        "batched",
        "first_timestamp_ms",
        "last_timestamp_ms",
        "next_offset",
        "size_bytes",
    )

    def __init__(
        self,
        directory: str,
        base_offset: int,
        fd: int,
        index_interval_bytes: int,
        fd_cache: FdCache,
        *,
        lazy: bool = False,
    ) -> None:
        self.base_offset = base_offset
        self.next_offset = base_offset
        self.size_bytes = 0
        self.first_timestamp_ms: int | None = None
        self.last_timestamp_ms: int | None = None
        #: True for the batch format (see :mod:`minibroker.storage.batch`): every
        #: new or empty segment; False for a segment written before batches
        #: existed, which is read but never appended to.
        self.batched = True
        self._directory = directory
        self._log_path: str | None = None
        #: The segment's own read-write descriptor while it is active (or being
        #: loaded at open), -1 once sealed: reads then borrow one from ``_fds``.
        self._fd = fd
        self._fds = fd_cache
        self._closed = False
        self._interval_bytes = index_interval_bytes
        #: None for a sealed segment opened from the checkpoint (``lazy``) and not
        #: read yet.
        self._index: SparseIndex | None = None if lazy else SparseIndex(index_interval_bytes)
        self._index_dirty = False
        self._unsynced = False
        #: Set when a failed write could not be undone; the segment refuses appends.
        self._failed: StorageError | None = None

    @property
    def log_path(self) -> str:
        """The ``.log`` file (built when first asked: a lazy open makes thousands of segments)."""
        path = self._log_path
        if path is None:
            name = segment_file_name(self.base_offset, LOG_SUFFIX)
            path = self._log_path = os.path.join(self._directory, name)
        return path

    @property
    def unsynced(self) -> bool:
        """Whether records were appended since the last successful :meth:`sync`."""
        return self._unsynced

    @property
    def index_path(self) -> str:
        return os.path.join(self._directory, segment_file_name(self.base_offset, INDEX_SUFFIX))

    # -- getting a segment ---------------------------------------------------------

    @classmethod
    def create(
        cls, directory: str, base_offset: int, index_interval_bytes: int, fd_cache: FdCache
    ) -> FileSegment:
        """Create the empty file of a new active segment (the caller fsyncs the directory)."""
        path = os.path.join(directory, segment_file_name(base_offset, LOG_SUFFIX))
        try:
            fd = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise fileio.storage_error(exc, "creating", path) from exc
        return cls(directory, base_offset, fd, index_interval_bytes, fd_cache)

    @classmethod
    def open_sealed(
        cls,
        directory: str,
        base_offset: int,
        index_interval_bytes: int,
        expected_next_offset: int,
        fd_cache: FdCache,
        *,
        verify: bool = False,
    ) -> FileSegment | None:
        """Open an older segment that should end just before ``expected_next_offset``.

        Returns None when the segment is damaged (its records do not run
        validly from its base offset to ``expected_next_offset``). With
        ``verify`` every record is checked (a full scan), not only the tail.
        The file is checked through a descriptor of its own, which is closed
        before returning: later reads borrow one from ``fd_cache``.
        """
        segment = cls._open_existing(directory, base_offset, index_interval_bytes, fd_cache)
        try:
            if segment._load_sealed(expected_next_offset, verify):
                segment.close_writer()
                return segment
        except BaseException:
            segment.release()
            raise
        segment.release()
        return None

    @classmethod
    def from_checkpoint(
        cls, directory: str, facts: SealedFacts, index_interval_bytes: int, fd_cache: FdCache
    ) -> FileSegment:
        """A sealed segment known from the log's checkpoint, opened without touching its files.

        Its index is loaded, and the segment checked like :meth:`open_sealed`
        does, when it is first read (:meth:`_sparse_index`).
        """
        segment = cls(directory, facts.base_offset, -1, index_interval_bytes, fd_cache, lazy=True)
        segment.next_offset = facts.next_offset
        segment.size_bytes = facts.size_bytes
        segment.first_timestamp_ms = facts.first_timestamp_ms
        segment.last_timestamp_ms = facts.last_timestamp_ms
        segment.batched = facts.batched
        return segment

    def sealed_facts(self) -> SealedFacts | None:
        """What the log's checkpoint records about this segment once it is sealed."""
        if self.first_timestamp_ms is None or self.last_timestamp_ms is None:
            return None  # an empty segment is never sealed
        return SealedFacts(
            self.base_offset,
            self.next_offset,
            self.size_bytes,
            self.first_timestamp_ms,
            self.last_timestamp_ms,
            self.batched,
        )

    def _sparse_index(self) -> SparseIndex:
        """The index, loaded (and the segment checked) at the first read after a lazy open."""
        index = self._index
        if index is None:
            index = self._load_lazily()
        return index

    def _load_lazily(self) -> SparseIndex:
        recorded = (self.next_offset, self.size_bytes)
        loaded = self._load_sealed(self.next_offset)
        index = self._index
        if not loaded or index is None or (self.next_offset, self.size_bytes) != recorded:
            self._index = None  # so that every later read fails the same way
            self.next_offset, self.size_bytes = recorded
            raise self._corrupt("it does not match what was recorded when it was sealed")
        return index

    @classmethod
    def recover(
        cls, directory: str, base_offset: int, index_interval_bytes: int, fd_cache: FdCache
    ) -> tuple[FileSegment, int]:
        """Open the newest segment, cutting it back to its last valid record.

        Returns the segment, which is the active one and keeps its file open,
        and the number of bytes cut off its tail.
        """
        segment = cls._open_existing(directory, base_offset, index_interval_bytes, fd_cache)
        try:
            file_size = os.fstat(segment._fd).st_size
            data = segment._read_range(0, file_size)
            valid_bytes = segment._load_from_scan(data)
            cut = file_size - valid_bytes
            if cut:
                os.ftruncate(segment._fd, valid_bytes)
                os.fsync(segment._fd)
        except OSError as exc:
            segment.release()
            raise fileio.storage_error(exc, "recovering", segment.log_path) from exc
        except BaseException:
            segment.release()
            raise
        segment._index_dirty = True
        return segment, cut

    @classmethod
    def open_clean(
        cls,
        directory: str,
        base_offset: int,
        index_interval_bytes: int,
        fd_cache: FdCache,
        expected: CleanEnd,
    ) -> tuple[FileSegment | None, str]:
        """Open the newest segment of a cleanly closed log without scanning it.

        Trusts the index file and the end recorded at close (``expected``)
        once the file's size, the index's checksum and the records from the
        last index entry to the end agree with them. Returns the active
        segment, its file open, or ``(None, why)`` when something disagrees
        and the caller must scan it with :meth:`recover` instead.
        """
        segment = cls._open_existing(directory, base_offset, index_interval_bytes, fd_cache)
        try:
            problem = segment._load_clean(expected)
        except BaseException:
            segment.release()
            raise
        if problem:
            segment.release()
            return None, problem
        return segment, ""

    @classmethod
    def _open_existing(
        cls, directory: str, base_offset: int, index_interval_bytes: int, fd_cache: FdCache
    ) -> FileSegment:
        path = os.path.join(directory, segment_file_name(base_offset, LOG_SUFFIX))
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            raise fileio.storage_error(exc, "opening", path) from exc
        return cls(directory, base_offset, fd, index_interval_bytes, fd_cache)

    def _load_sealed(self, expected_next_offset: int, verify: bool = False) -> bool:
        self._load_size_and_format()
        index = None if verify else self._read_index_file()
        if index is not None and self._check_tail(index, expected_next_offset):
            self._index = index
            return True
        if not verify:
            log.warning("rebuilding the index of %s", self.log_path)
        valid_bytes = self._load_from_scan(self._read_range(0, self.size_bytes))
        if valid_bytes != self.size_bytes or self.next_offset != expected_next_offset:
            return False
        if verify:
            return True  # the index on disk is not needed: the scan rebuilt it in memory
        try:
            self._write_index_file()
        except (StorageError, StorageFull) as exc:  # the in-memory index is enough to serve
            log.warning("could not rewrite %s: %s", self.index_path, exc)
        return True

    def _load_clean(self, expected: CleanEnd) -> str:
        """Take the index and end recorded at a clean close; say what is wrong, if anything."""
        self._load_size_and_format()
        if self.size_bytes != expected.size_bytes:
            return f"the file holds {self.size_bytes} bytes, not {expected.size_bytes}"
        if not self.size_bytes:  # an empty segment never needed an index file
            if expected.next_offset != self.base_offset:
                return f"an empty segment cannot end before offset {expected.next_offset}"
            return ""
        data = self._read_index_bytes()
        if data is None:
            return f"{self.index_path} is missing or unreadable"
        if zlib.crc32(data) != expected.index_crc32:
            return f"{self.index_path} is not the index written at close"
        index = SparseIndex.from_bytes(data, self._interval_bytes, self.size_bytes)
        if index is None or not self._check_tail(index, expected.next_offset):
            return f"its last records do not end before offset {expected.next_offset}"
        self._index = index
        return ""

    def _load_size_and_format(self) -> None:
        """Learn the file's size and, from its first byte, its format."""
        try:
            if self._fd >= 0:
                self.size_bytes = os.fstat(self._fd).st_size
            else:
                with self._fds.borrow(self, self.log_path) as fd:
                    self.size_bytes = os.fstat(fd).st_size
        except OSError as exc:
            raise fileio.storage_error(exc, "opening", self.log_path) from exc
        self.batched = not self.size_bytes or starts_with_batch(self._read_range(0, 1))

    def _check_tail(self, index: SparseIndex, expected_next_offset: int) -> bool:
        """Cheap trust check of a sealed segment: its last records are valid and end it.

        In the batch format the last index entry may point into the middle of
        a batch: the frames up to the next header are checked one by one,
        every batch after it whole.
        """
        relative, position = index.entry(len(index) - 1) if len(index) else (0, 0)
        tail = self._read_range(position, self.size_bytes - position)
        first = self.base_offset + relative
        scan: FrameScan | BatchScan
        if self.batched:
            scan = scan_batches(tail, first, leading_frames=bool(position))
        else:
            scan = scan_frames(tail, first)
        if (
            scan.valid_bytes != len(tail)
            or scan.last_offset is None
            or scan.last_offset + 1 != expected_next_offset
            or scan.last_timestamp_ms is None
        ):
            return False
        try:
            first_offset, first_timestamp, kafka = self._first_record()
        except CorruptRecord:
            return False
        # A Kafka batch's time is its largest so far, which a tail scan
        # cannot know: only frames are held to the order here.
        if first_offset != self.base_offset or (
            not kafka and first_timestamp > scan.last_timestamp_ms
        ):
            return False
        self.next_offset = expected_next_offset
        self.first_timestamp_ms = first_timestamp
        self.last_timestamp_ms = max(scan.last_timestamp_ms, first_timestamp)
        return True

    def _first_record(self) -> tuple[int, int, bool]:
        """``(offset, timestamp, in a Kafka batch)`` of the segment's first record."""
        if self.batched:
            header = parse_batch_header(self._read_range(0, BATCH_HEADER_SIZE), 0)
            if header is not None and header[2] == KIND_ENTRIES:
                length = header[1]
                entries = entries_facts(self._read_range(BATCH_HEADER_SIZE, length), 0, length)
                if entries is None:
                    raise CorruptRecord("the first batch of entries is damaged")
                return entries.first_offset, entries.timestamp_ms, False
            if header is not None and header[2] == KIND_KAFKA:
                length = header[1]
                batch = self._read_range(BATCH_HEADER_SIZE, length)
                facts = stored_facts(batch, 0, length)
                if facts is None:
                    raise CorruptRecord("the first Kafka batch is damaged")
                return facts.base_offset, max(facts.max_timestamp_ms, 0), True
        record = self._record_at(self._first_frame_position)
        return record.offset, record.timestamp_ms, False

    @property
    def _first_frame_position(self) -> int:
        return BATCH_HEADER_SIZE if self.batched else 0

    def _load_from_scan(self, data: bytes) -> int:
        """Take offsets, timestamps and index from a full scan; return the valid byte count.

        In the batch format only whole batches count: a batch cut short or
        damaged anywhere is not part of the valid bytes, nor is anything after it.
        """
        self.batched = not data or starts_with_batch(data)
        index = self._index = SparseIndex(self._interval_bytes)
        scan: FrameScan | BatchScan
        if self.batched:
            scan = scan_batches(data, self.base_offset)
            units: list[tuple[int, list[int] | int]] = [*scan.batches, *scan.units]
            units.sort(key=lambda unit: unit[0])
            relative = 0
            for position, frames in units:
                if isinstance(frames, int):  # a batch read whole, of that many records
                    index.add_unit(relative, position)
                    relative += frames
                else:
                    index.add_batch(relative, position, frames)
                    relative += len(frames)
        else:
            scan = scan_frames(data, self.base_offset)
            index.add_batch(0, 0, scan.frame_sizes)
        self.size_bytes = scan.valid_bytes
        self.batched = self.batched or not scan.valid_bytes  # an emptied file takes batches
        self.next_offset = self.base_offset + scan.record_count
        self.first_timestamp_ms = scan.first_timestamp_ms
        self.last_timestamp_ms = scan.last_timestamp_ms
        return scan.valid_bytes

    # -- append --------------------------------------------------------------------

    def append(self, batch: EncodedBatch, timestamp_ms: int) -> None:
        """Write the batch, behind its batch header, with one unbuffered write.

        On failure the file is left as it was. Only batch-format segments are
        appended to (the log starts a new segment after an old-format one).
        """
        self._check_appendable()
        data = encode_batch_header(len(batch.frame_sizes), len(batch.data)) + batch.data
        position = self._write_at_end(data)
        self._sparse_index().add_batch(
            self.next_offset - self.base_offset, position + BATCH_HEADER_SIZE, batch.frame_sizes
        )
        self._appended(len(data), len(batch.frame_sizes), timestamp_ms)

    def append_kafka(self, batch: bytes, count: int, timestamp_ms: int) -> None:
        """Write a Kafka batch behind its batch header, its base offset set on the way.

        Like :meth:`append`: one unbuffered write, the file as it was on failure.
        """
        self._check_appendable()
        header = encode_batch_header(count, len(batch), KIND_KAFKA)
        with memoryview(batch) as view:  # one copy of the batch, by the join
            data = b"".join((header, stored_head(batch, self.next_offset), view[STORED_HEAD_SIZE:]))
        position = self._write_at_end(data)
        self._sparse_index().add_unit(self.next_offset - self.base_offset, position)
        self._appended(len(data), count, timestamp_ms)

    def append_entries(self, batch: EncodedEntries, count: int, timestamp_ms: int) -> None:
        """Write a batch of entries behind its batch header: one copy of the entries
        (the join), one unbuffered write, the file as it was on failure; one index
        entry at most, for the whole batch."""
        self._check_appendable()
        header = encode_batch_header(count, batch.size, KIND_ENTRIES)
        data = b"".join((header, batch.head, batch.entries))
        position = self._write_at_end(data)
        self._sparse_index().add_unit(self.next_offset - self.base_offset, position)
        self._appended(len(data), count, timestamp_ms)

    def _check_appendable(self) -> None:
        if self._failed is not None:
            raise self._failed
        if not self.batched:
            raise StorageError(f"{self.log_path} is in the old format; it is never appended to")

    def _write_at_end(self, data: bytes) -> int:
        """One unbuffered write of a whole unit at the end; returns where it starts.

        On failure the file is cut back to where it was (see ``_undo_write``).
        """
        position = self.size_bytes
        try:
            fileio.write_all(self._fd, data, position)
        except OSError as exc:
            error = fileio.storage_error(exc, "appending to", self.log_path)
            self._undo_write(position, error)
            raise error from exc
        return position

    def _appended(self, size: int, records: int, timestamp_ms: int) -> None:
        """The bookkeeping after a unit of ``records`` records reached the file."""
        self.size_bytes += size
        self.next_offset += records
        if self.first_timestamp_ms is None:
            self.first_timestamp_ms = timestamp_ms
        self.last_timestamp_ms = timestamp_ms
        self._index_dirty = True
        self._unsynced = True

    def _undo_write(self, position: int, error: Exception) -> None:
        """Cut off whatever part of a failed write reached the file."""
        try:
            os.ftruncate(self._fd, position)
        except OSError as exc:
            log.error("cannot undo a failed write to %s: %s", self.log_path, exc)
            self._failed = StorageError(
                f"{self.log_path} may hold a partial write; reopen the log to recover it",
                path=self.log_path,
            )
            self._failed.__cause__ = error

    # -- read ----------------------------------------------------------------------

    def read(
        self, offset: int, max_records: int, max_bytes: int, at_least_one: bool
    ) -> tuple[bytes, int]:
        """Whole frames from ``offset``, found with the sparse index then a short scan.

        The frames between the index entry and ``offset`` are stepped over by
        their length fields, then as many frames as the limits allow. Both
        walks usually happen inside one window read with one ``pread``, which
        is then also the answer. Where a Kafka batch lies on the way, the
        stored units are read instead and its records framed
        (:func:`~minibroker.storage.batch.frames_of`).
        """
        if not self._unit_at_index(offset):
            try:
                return self._read_frames(offset, max_records, max_bytes, at_least_one)
            except _KafkaBatchMet:
                pass
        try:
            return frames_through(
                self._units_from, offset, self.next_offset, max_records, max_bytes, at_least_one
            )
        except CorruptRecord as exc:  # a batch read whole failed its CRC as it was framed
            raise self._corrupt(str(exc)) from None

    def _units_from(self, offset: int, max_bytes: int, at_least_one: bool) -> list[StoredBatch]:
        return self.read_batches(offset, self.next_offset, max_bytes, at_least_one)

    def read_stored(
        self,
        offset: int,
        max_records: int,
        max_bytes: int,
        at_least_one: bool,
        first_batch_bytes: int = 0,
    ) -> tuple[bytes, int]:
        """:meth:`read` for a client that takes batches of entries as stored
        (:func:`~minibroker.storage.batch.stored_of`)."""
        if not self._unit_at_index(offset):
            try:
                return self._read_frames(offset, max_records, max_bytes, at_least_one)
            except _KafkaBatchMet:
                pass
        units = self.read_batches(offset, self.next_offset, max_bytes, at_least_one)
        try:
            return stored_of(
                units, offset, max_records, max_bytes, at_least_one, first_batch_bytes
            )
        except CorruptRecord as exc:
            raise self._corrupt(str(exc)) from None

    def _unit_at_index(self, offset: int) -> bool:
        """Whether the index entry before ``offset`` points at a batch read whole: then
        the frames-only path would read a window only to give up (four bytes read here)."""
        if not self.batched:
            return False
        _, position = self._sparse_index().floor(offset - self.base_offset)
        return is_unit_header(self._read_range(position, 4), 0)

    def _read_frames(
        self, offset: int, max_records: int, max_bytes: int, at_least_one: bool
    ) -> tuple[bytes, int]:
        """:meth:`read` where only frames lie between the index entry and the answer's end."""
        relative = offset - self.base_offset
        entry_relative, position = self._sparse_index().floor(relative)
        to_skip = relative - entry_relative
        average = self.size_bytes // max(1, self.next_offset - self.base_offset)
        answer_guess = min(max_records * average, max_bytes) + average
        window = self._window(position, (to_skip + 1) * average + answer_guess)
        start, skipped, window = self._walk(window, position, to_skip, _NO_LIMIT, False, [])
        if skipped != to_skip:
            raise self._corrupt(f"offset {offset} is missing")
        headers: list[int] = []
        end, count, window = self._walk(
            window, start, max_records, max_bytes, at_least_one, headers
        )
        if not count:
            return b"", 0
        if window.start <= start and end <= window.end:
            data = strip_batch_headers(window.data, headers, window.start, start, end)
        else:
            data = self._read_range(start, end - start)
            data = strip_batch_headers(data, headers, start, start, end)
        if peek_offset(data, 0) != offset:  # the index led us astray: never serve wrong offsets
            raise self._corrupt(f"the index does not lead to offset {offset}")
        return data, count

    def _walk(
        self,
        window: _Window,
        start: int,
        max_records: int,
        max_bytes: int,
        at_least_one: bool,
        headers: list[int],
    ) -> tuple[int, int, _Window]:
        """Step over frames from ``start`` like :func:`span_frames`: ``(end, count, window)``.

        Reads a new window when the frames run past the current one; a frame
        bigger than a window is stepped over by its length alone. Batch
        headers are stepped over too (not counted in ``max_bytes``), and their
        file positions added to ``headers``, which must start empty.
        """
        end = start
        count = 0
        while count < max_records and end < self.size_bytes:
            budget = max_bytes - (end - start - BATCH_HEADER_SIZE * len(headers))
            if end + 4 > window.end or end < window.start:
                average = self.size_bytes // max(1, self.next_offset - self.base_offset)
                window = self._window(end, min((max_records - count) * average, budget) + average)
            first = at_least_one and not count
            used, taken = span_frames(
                window.data,
                end - window.start,
                max_records - count,
                budget,
                first,
                headers,
                window.start,
            )
            end = window.start + used
            count += taken
            if count >= max_records or end >= self.size_bytes:
                break
            # span_frames stopped early: the next frame is over budget or runs past the
            # window, or a batch header does.
            head = window.data[used : used + 4]
            if len(head) < 4:
                head = self._read_range(end, 4)
            if self.batched and head[:1] == bytes((BATCH_MAGIC,)):
                if is_unit_header(head, 0):
                    raise _KafkaBatchMet
                headers.append(end)
                end += BATCH_HEADER_SIZE
                continue
            size = frame_size_at(head, 0)
            if size is None or size < 4 + MIN_FRAME_LENGTH or end + size > self.size_bytes:
                raise self._corrupt(f"bad frame length at byte {end}")
            answer_bytes = end - start - BATCH_HEADER_SIZE * len(headers)
            if answer_bytes + size > max_bytes and (count or not at_least_one):
                break
            end += size
            count += 1
        return end, count, window

    def read_batches(
        self, offset: int, end_offset: int, max_bytes: int, at_least_one: bool
    ) -> list[StoredBatch]:
        """The stored units from ``offset``: Kafka batches and batches of entries
        whole, frames in runs.

        Starts at the sparse index entry at or before ``offset`` and steps
        over units by their headers and frames by their lengths; the bytes of
        a batch read whole are never looked into, only sliced out (its first
        offset is checked against the index).
        """
        relative = offset - self.base_offset
        entry_relative, pos = self._sparse_index().floor(relative)
        current = self.base_offset + entry_relative
        limit = self.size_bytes
        found: list[StoredBatch] = []
        size = 0
        run_start = run_first = run_count = 0
        window = _Window(b"", pos)

        def close_run() -> None:
            nonlocal run_count
            if run_count:
                data = self._slice(window, run_start, pos)
                if peek_offset(data, 0) != run_first:
                    raise self._corrupt(f"the index does not lead to offset {run_first}")
                found.append(StoredBatch(KIND_FRAMES, data, run_first, run_count))
                run_count = 0

        while pos < limit and current < end_offset:
            if pos < window.start or pos + BATCH_HEADER_SIZE > window.end:
                window = self._window(pos, max_bytes - size + _MIN_WINDOW)
            at = pos - window.start
            if window.data[at] == BATCH_MAGIC:
                header = parse_batch_header(window.data, at)
                if header is None:
                    raise self._corrupt(f"bad batch header at byte {pos}")
                count, length, kind = header
                close_run()
                if kind == KIND_FRAMES:
                    pos += BATCH_HEADER_SIZE
                    continue
                end = pos + BATCH_HEADER_SIZE + length
                if end > limit:
                    raise self._corrupt(f"the batch at byte {pos} runs past the end")
                if current + count <= offset:
                    pos, current = end, current + count
                    continue
                if current + count > end_offset or (
                    size + length > max_bytes and (found or not at_least_one)
                ):
                    break
                data = self._slice(window, pos + BATCH_HEADER_SIZE, end)
                if _unit_first_offset(data, kind) != current:
                    raise self._corrupt(f"the index does not lead to offset {current}")
                found.append(StoredBatch(kind, data, current, count))
                size += length
                pos, current = end, current + count
                continue
            if at + 4 > len(window.data):
                raise self._corrupt(f"a frame is cut short at byte {pos}")
            (length,) = _LENGTH.unpack_from(window.data, at)
            frame = 4 + length
            if length < MIN_FRAME_LENGTH or pos + frame > limit:
                raise self._corrupt(f"bad frame length at byte {pos}")
            if current >= offset:
                if size + frame > max_bytes and (found or run_count or not at_least_one):
                    break
                if not run_count:
                    run_start, run_first = pos, current
                run_count += 1
                size += frame
            pos += frame
            current += 1
        close_run()
        return found

    def _slice(self, window: _Window, start: int, end: int) -> bytes:
        """File bytes ``[start, end)``: from ``window`` when it holds them, else read."""
        if window.start <= start and end <= window.end:
            return window.data[start - window.start : end - window.start]
        return self._read_range(start, end - start)

    def _window(self, position: int, wanted: int) -> _Window:
        length = min(self.size_bytes - position, max(wanted, _MIN_WINDOW), _MAX_WINDOW)
        return _Window(self._read_range(position, length), position)

    def _read_range(self, position: int, length: int) -> bytes:
        """Bytes ``[position, position + length)`` of the file (fewer at its end).

        The active segment reads through its own descriptor; a sealed one
        borrows a descriptor from the cache, which opens the file if it is
        not open already. Failing to open it is reported like a failed read.
        """
        try:
            if self._fd >= 0:
                return _pread_all(self._fd, position, length)
            if self._closed:  # as a read on a closed descriptor always did
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            with self._fds.borrow(self, self.log_path) as fd:
                return _pread_all(fd, position, length)
        except OSError as exc:
            raise fileio.storage_error(exc, "reading", self.log_path) from exc

    def _record_at(self, position: int) -> Record:
        head = self._read_range(position, 4)
        if is_unit_header(head, 0):
            raise _KafkaBatchMet
        size = frame_size_at(head, 0)
        if size is None or size > MAX_FRAME_SIZE or position + size > self.size_bytes:
            raise CorruptRecord(f"bad frame length at byte {position}")
        return decode_records(self._read_range(position, size))[0]

    def _corrupt(self, problem: str) -> StorageError:
        log.error("%s is corrupt: %s", self.log_path, problem)
        return StorageError(f"{self.log_path} is corrupt: {problem}", path=self.log_path)

    # -- time ------------------------------------------------------------------------

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """First offset with a timestamp >= ``timestamp_ms``, found by bisecting the index.

        Timestamps never decrease, so the records at the index entries are
        sorted by time too: a bisect over them (one small read per probe)
        narrows the search to the stretch between two entries, which is then
        scanned.
        """
        if self.last_timestamp_ms is None or self.last_timestamp_ms < timestamp_ms:
            return None
        if (
            self.first_timestamp_ms is not None
            and self.first_timestamp_ms >= timestamp_ms
            and not (self.batched and is_kafka_header(self._read_range(0, 4), 0))
        ):  # (a Kafka batch's time is its newest record's: it may hold older ones)
            return self.base_offset
        try:
            try:
                return self._bisect_time(timestamp_ms)
            except _KafkaBatchMet:
                return self._scan_time(timestamp_ms)
        except CorruptRecord as exc:
            raise self._corrupt(str(exc)) from None

    def _scan_time(
        self, timestamp_ms: int, start: int | None = None, end: int | None = None
    ) -> int | None:
        """:meth:`offset_for_timestamp` by reading the segment's units (from ``start``
        to ``end``: all of it by default), when it holds Kafka batches (their
        records have no index entries to bisect over), or the stretch between
        two index entries holds batches read whole."""
        first = self.base_offset if start is None else start
        units = self.read_batches(first, self.next_offset if end is None else end, _NO_LIMIT, True)
        for unit in units:
            if unit.kind == KIND_KAFKA:
                found = first_at_or_after(unit.data, timestamp_ms)
                if found is not None:
                    return found
                continue
            if unit.kind == KIND_ENTRIES:
                if ENTRIES_HEAD.unpack_from(unit.data)[2] >= timestamp_ms:
                    return unit.first_offset
                continue
            for offset, timestamp, _, _, _ in decode_fields(unit.data):
                if timestamp >= timestamp_ms:
                    return offset
        return None

    def _bisect_time(self, timestamp_ms: int) -> int:
        index = self._sparse_index()
        entries = len(index)
        later = bisect_left(
            range(entries),
            timestamp_ms,
            key=lambda i: self._timestamp_at(index.entry(i)[1]),
        )
        relative, start = index.entry(later - 1) if later else (0, 0)
        stop = index.entry(later)[1] if later < entries else self.size_bytes
        try:
            frames = self._frames_between(start, stop)
        except _KafkaBatchMet:  # batches of entries on the way: step over them whole
            end = self.base_offset + index.entry(later)[0] if later < entries else None
            found = self._scan_time(timestamp_ms, self.base_offset + relative, end)
            if found is not None:
                return found
            frames = b""
        for i, (offset, timestamp, _, _, _) in enumerate(decode_fields(frames)):
            if offset != self.base_offset + relative + i:
                raise CorruptRecord(f"offset {offset} found where the index expected another")
            if timestamp >= timestamp_ms:
                return offset
        if later < entries:
            return self.base_offset + index.entry(later)[0]
        raise CorruptRecord(f"no record at or after timestamp {timestamp_ms}")

    def _timestamp_at(self, position: int) -> int:
        """The timestamp of the record (or batch of entries: all its records') at
        ``position``, where an index entry points."""
        head = self._read_range(position, BATCH_HEADER_SIZE + ENTRIES_HEAD.size)
        if len(head) == BATCH_HEADER_SIZE + ENTRIES_HEAD.size and is_unit_header(head, 0):
            header = parse_batch_header(head, 0)
            if header is not None and header[2] == KIND_ENTRIES:
                return int(ENTRIES_HEAD.unpack_from(head, BATCH_HEADER_SIZE)[2])
        return self._record_at(position).timestamp_ms

    def _frames_between(self, start: int, stop: int) -> bytes:
        """The record frames in bytes ``[start, stop)`` of the file, batch headers cut out."""
        data = self._read_range(start, stop - start)
        headers: list[int] = []
        end, _ = span_frames(data, 0, _NO_LIMIT, _NO_LIMIT, False, headers, start)
        if end != len(data) and is_unit_header(data, end):
            raise _KafkaBatchMet
        return strip_batch_headers(data, headers, start, start, stop)

    # -- durability and lifecycle ------------------------------------------------------

    def seal(self) -> None:
        """Make this segment final before a newer one exists: index file written, all fsynced."""
        self._write_index_file()
        self.sync()

    def sync(self) -> None:
        """fdatasync the log file if anything was appended since the last sync.

        A failure is :class:`~minibroker.errors.StorageFailed`: the log
        (:mod:`minibroker.storage.commitlog`) never retries it.
        """
        if not self._unsynced:
            return
        try:
            fileio.datasync(self._fd)
        except OSError as exc:
            raise fileio.sync_failure(exc, self.log_path) from exc
        self._unsynced = False

    def close_writer(self) -> None:
        """Give up the segment's own descriptor once it is sealed: reads now borrow one.

        Called once a newer segment has taken over (after a roll) or once an
        older segment was checked at open; not by :meth:`seal`, so that a roll
        that fails after sealing leaves the old segment active and writable.
        """
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            # Nothing is written through it any more (a sealed segment was
            # fdatasynced), and Linux frees it even when close reports an error.
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Write the index, sync and close. Safe to call twice."""
        if self._closed:
            return
        try:
            if self._failed is None:
                if self._index_dirty:
                    self._write_index_file()
                self.sync()
        finally:
            self.release()

    def delete(self) -> None:
        """Remove both files (the caller fsyncs the directory), then close."""
        for path in (self.log_path, self.index_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise fileio.storage_error(exc, "deleting", path) from exc
        self.release()

    def release(self) -> None:
        """Close every descriptor of the file, without writing the index or syncing.

        Both the segment's own (active segment) and any the cache holds for it
        (sealed segment): after :meth:`close` or :meth:`delete` nothing of the
        segment stays open.
        """
        self._closed = True
        self._fds.discard(self)
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    # -- the index file ------------------------------------------------------------

    def _read_index_file(self) -> SparseIndex | None:
        data = self._read_index_bytes()
        if data is None:
            return None
        return SparseIndex.from_bytes(data, self._interval_bytes, self.size_bytes)

    def _read_index_bytes(self) -> bytes | None:
        """The index file's bytes, None when it is missing or cannot be read (it is rebuilt)."""
        try:
            with open(self.index_path, "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read %s: %s", self.index_path, exc)
            return None

    def clean_end(self) -> CleanEnd | None:
        """What a clean-shutdown marker records about this closed segment, None if not clean.

        Only after :meth:`close` wrote the index and synced: a segment whose
        failed write could not be undone may hold a partial batch and must
        be scanned next time.
        """
        if self._failed is not None or self._index_dirty or self._unsynced:
            return None
        index = self._sparse_index()
        return CleanEnd(self.size_bytes, self.next_offset, zlib.crc32(index.to_bytes()))

    def _write_index_file(self) -> None:
        """Rewrite the index file from memory and fsync it (a failed fsync is
        :class:`~minibroker.errors.StorageFailed`, as the log file's)."""
        try:
            fd = os.open(self.index_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                fileio.write_all(fd, self._sparse_index().to_bytes(), 0)
                try:
                    fileio.fsync_file(fd)
                except OSError as exc:
                    raise fileio.sync_failure(exc, self.index_path) from exc
            finally:
                os.close(fd)
        except OSError as exc:
            raise fileio.storage_error(exc, "writing", self.index_path) from exc
        self._index_dirty = False


@dataclass(frozen=True, slots=True)
class CleanEnd:
    """The newest segment as a clean close left it: what lets the next open skip its scan."""

    #: Exact size of the ``.log`` file.
    size_bytes: int
    #: The offset after its last record.
    next_offset: int
    #: ``zlib.crc32`` of the ``.index`` file written at close.
    index_crc32: int


def _unit_first_offset(data: bytes, kind: int) -> int:
    """The first offset a batch read whole says it holds."""
    if kind == KIND_ENTRIES:
        return int(ENTRIES_HEAD.unpack_from(data)[1])
    return base_offset_of(data)


def _pread_all(fd: int, position: int, length: int) -> bytes:
    """``os.pread`` until ``length`` bytes or the end of the file."""
    data = os.pread(fd, length, position)
    while len(data) < length:
        more = os.pread(fd, length - len(data), position + len(data))
        if not more:
            break
        data += more
    return data
