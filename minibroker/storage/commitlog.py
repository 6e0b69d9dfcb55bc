"""The disk log store: a directory of segments, opened with crash recovery.

A log directory holds, for each segment, ``<base offset>.log`` and
``<base offset>.index`` (see :mod:`minibroker.storage.segment`), a ``.lock``
file that keeps a second process (or a second open in this one) from writing
the same log, and, while the log is closed after a clean close, a
``.clean_shutdown`` marker.

Opening a directory is recovery, every time; a clean close only spares the
scan of the newest segment (step 2):

1. older segments are trusted, after a cheap check (index well-formed, last
   records valid and ending where the next segment begins); a missing or
   corrupt index is rebuilt by scanning;
2. the newest segment is scanned record by record and truncated after its last
   valid record, which removes a torn write or a corrupt tail. This is the
   one part of opening that costs time in proportion to data (every record's
   CRC is checked), which is why the newest segment is the only one scanned.
   Unless the log was closed cleanly: :meth:`SegmentedLog.close` writes the
   marker (the newest segment's base offset, exact size, next offset and a
   checksum of its index file) once everything is written and fsynced, and
   an open that finds a marker matching the newest segment trusts it like an
   older segment, with the same cheap check of its last records, instead of
   scanning it (Kafka's clean-shutdown file). The marker is read and deleted,
   durably, before anything in the directory is touched, so a crash after the
   reopen leads to a full scan again. ``verify`` ignores the marker;
3. should an *older* segment fail its check (real disk damage, since a
   segment is fsynced before a newer one is created), it is treated like the
   newest: cut to its valid prefix, and the segments after it are deleted,
   because offsets must stay dense. This is what Kafka does too.

The outcome is in :attr:`SegmentedLog.recovery` and logged on the
``minibroker.storage`` logger.

Durability is the caller's to orchestrate: :meth:`SegmentedLog.append` writes
without fsync; the server calls :meth:`SegmentedLog.sync` once for every
append that arrived while the previous sync ran (group commit). Only
structural changes fsync on their own: a segment is fsynced (data and index)
when it is rolled over, and the directory when segment files are created or
deleted. A new log's own directory (and any parent :meth:`SegmentedLog.open`
had to create) is made durable by the log's first sync, batched with every
other store created in the same directory
(:mod:`minibroker.storage.new_directories`).

A failed fsync (of a segment, an index file, or a directory whose entries
the log needs) makes the log fail-stop: the kernel may have dropped the
pages that fsync was to write and marked them clean, so a retry that
succeeds proves nothing. From then on :meth:`SegmentedLog.append` and every
other write raise :class:`~minibroker.errors.StorageFailed`, nothing is
fsynced again, and a close leaves no clean-shutdown marker: the next open
(a restart) recovers from what is on disk. The group commit learns of the
failure once (:meth:`SegmentedLog.group_sync`), to fail every confirmation
that was waiting on the log; reads go on.

Open files: the active segment's file and the ``.lock`` file stay open while
the log is; older segments are opened for a read and closed again through a
bounded :class:`~minibroker.storage.fd_cache.FdCache` shared by every log in
the process, so a log with many segments, or many logs, cannot run the
process out of file descriptors.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from minibroker.errors import StorageError, StorageFailed, StorageFull
from minibroker.log_store import Entry
from minibroker.storage import fileio
from minibroker.storage.chain import DEFAULT_SEGMENT_BYTES, SegmentChain, check_segment_bytes
from minibroker.storage.checkpoint import (
    CHECKPOINT_FILE_NAME,
    SealedFacts,
    append_entry,
    read_checkpoint,
    rewrite_checkpoint,
)
from minibroker.storage.fd_cache import SHARED_FD_CACHE, FdCache
from minibroker.storage.new_directories import SHARED_PENDING_DIRECTORIES, make_directories
from minibroker.storage.segment import (
    DEFAULT_INDEX_INTERVAL_BYTES,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    CleanEnd,
    FileSegment,
    segment_file_name,
)

log = logging.getLogger("minibroker.storage")

LOCK_FILE_NAME: Final = ".lock"
#: Written by a clean close, deleted by the next open (see the module docstring).
CLEAN_SHUTDOWN_FILE_NAME: Final = ".clean_shutdown"
_MARKER_VERSION: Final = 1
_DIGITS: Final = 20
#: Stale checkpoint entries tolerated (beyond as many as there are live ones)
#: before the file is rewritten instead of appended to.
_CHECKPOINT_SLACK: Final = 64


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening a log directory found and repaired."""

    #: Segments in the log after recovery.
    segments: int
    #: Records in the log after recovery.
    records: int
    #: Bytes cut off damaged segments, including the bytes of segments removed.
    bytes_truncated: int
    #: Segments deleted because an older segment before them was damaged.
    segments_removed: int = 0
    #: True when a clean-shutdown marker let the newest segment be trusted
    #: instead of scanned (False after a crash, or when the marker did not match).
    scan_skipped: bool = False
    #: Older segments taken from the checkpoint without opening their files.
    lazy_segments: int = 0


@dataclass(frozen=True, slots=True)
class CleanShutdown:
    """The content of a clean-shutdown marker: the newest segment as the close left it."""

    base_offset: int
    end: CleanEnd

    def to_bytes(self) -> bytes:
        """A small JSON document: readable when debugging, and versioned."""
        fields = {
            "version": _MARKER_VERSION,
            "base_offset": self.base_offset,
            "size_bytes": self.end.size_bytes,
            "next_offset": self.end.next_offset,
            "index_crc32": self.end.index_crc32,
        }
        return json.dumps(fields).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CleanShutdown | None:
        """Parse a marker; None if it is not exactly one this version wrote."""
        try:
            fields = json.loads(data)
        except ValueError:
            return None
        names = ("version", "base_offset", "size_bytes", "next_offset", "index_crc32")
        if not isinstance(fields, dict) or sorted(fields) != sorted(names):
            return None
        values = [fields[name] for name in names]
        if any(type(value) is not int or value < 0 for value in values):
            return None
        version, base, size, next_offset, crc = values
        if version != _MARKER_VERSION or next_offset < base:
            return None
        return cls(base, CleanEnd(size, next_offset, crc))


class SegmentedLog(SegmentChain[FileSegment]):
    """A :class:`~minibroker.log_store.LogStore` kept in a directory of segment files.

    Create or reopen one with :meth:`open`.
    """

    def __init__(
        self,
        directory: str,
        segments: list[FileSegment],
        segment_bytes: int,
        index_interval_bytes: int,
        recovery: RecoveryReport,
        lock_fd: int,
        fd_cache: FdCache,
    ) -> None:
        super().__init__(segments, segment_bytes)
        self.directory = directory
        self.index_interval_bytes = index_interval_bytes
        self._fd_cache = fd_cache
        #: What :meth:`open` found and repaired.
        self.recovery = recovery
        self._lock_fd = lock_fd
        #: Entries in the checkpoint file, stale ones included (see
        #: :mod:`minibroker.storage.checkpoint`).
        self._checkpoint_entries = 0
        #: Directories whose entries this log's creation changed, until a sync
        #: made them durable (see :mod:`minibroker.storage.new_directories`).
        self._new_entries: tuple[str, ...] = ()
        #: The failed fsync that made this log fail-stop (module docstring).
        self._failed: StorageFailed | None = None
        #: Whether writes no good sync covered were in the log when it failed,
        #: so that the group commit's next sync must fail (once) the
        #: confirmations waiting on them: see :meth:`group_sync`.
        self._failure_owed = False
        #: Told of the failure when it happens (the data directory lists failed stores).
        self.on_failure: Callable[[StorageFailed], None] | None = None

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        index_interval_bytes: int = DEFAULT_INDEX_INTERVAL_BYTES,
        start_offset: int = 0,
        *,
        verify: bool = False,
        fd_cache: FdCache | None = None,
    ) -> SegmentedLog:
        """Open the log in ``directory`` (created if missing), recovering it.

        ``start_offset`` is the first offset of a brand-new log and is ignored
        when the directory already holds segments. ``verify`` checks every
        record of the older segments too, not only their tails (step 1 of the
        module docstring becomes a full scan): for stores that are replayed
        in full at start anyway, so that damage anywhere cuts the store to
        its valid prefix instead of failing the replay. ``fd_cache`` holds
        the descriptors of the older segments while they are read; the
        default is the one cache shared by the whole process.
        """
        check_segment_bytes(segment_bytes)
        if index_interval_bytes < 1:
            raise ValueError("index_interval_bytes must be at least 1")
        if start_offset < 0:
            raise ValueError("start_offset must not be negative")
        path = os.fspath(directory)
        try:
            new_entries = make_directories(path)
        except OSError as exc:
            raise fileio.storage_error(exc, "creating", path) from exc
        # The new directories' names are made durable at the first sync.
        SHARED_PENDING_DIRECTORIES.add(new_entries)
        cache = SHARED_FD_CACHE if fd_cache is None else fd_cache
        lock_fd = _lock_directory(path)
        try:
            marker = _take_marker(path)
            known, entries = ({}, 0) if verify else read_checkpoint(path)
            segments, report = _recover(
                path, index_interval_bytes, start_offset, cache, verify, marker, known
            )
        except BaseException:
            os.close(lock_fd)
            raise
        store = cls(path, segments, segment_bytes, index_interval_bytes, report, lock_fd, cache)
        store._new_entries = new_entries
        try:
            store._checkpoint_entries = entries
            missing = report.lazy_segments < len(segments) - 1  # checked the old way
            if not verify and (missing or report.segments_removed):
                store._rewrite_checkpoint()
            store._leave_old_format()
        except BaseException:
            store.close()
            raise
        log.info(
            "opened log %s: %d segments, offsets [%d, %d), %d bytes",
            path,
            store.segment_count,
            store.first_offset,
            store.next_offset,
            store.size_bytes,
        )
        return store

    def _leave_old_format(self) -> None:
        """Roll over a newest segment written before batches existed (format 1).

        Old segments are read as they are, but appending batches after bare
        frames would mix two formats in one file; so the first open after an
        upgrade seals the old segment and appends go to a new one. Nothing is
        rewritten.
        """
        active = self._segments[-1]
        if active.batched:
            return
        log.info(
            "%s: segment %s is in the old format (format 1, no batch headers): "
            "appends go to a new segment",
            self.directory,
            active.base_offset,
        )
        self._roll()

    # -- SegmentChain hooks ------------------------------------------------------

    def _create_segment(self, base_offset: int) -> FileSegment:
        segment = FileSegment.create(
            self.directory, base_offset, self.index_interval_bytes, self._fd_cache
        )
        try:
            fileio.fsync_directory(self.directory)
        except OSError as exc:
            segment.delete()
            raise fileio.sync_failure(exc, self.directory) from exc
        return segment

    def _seal_segment(self, segment: FileSegment) -> None:
        segment.seal()

    def _after_roll(self, sealed: FileSegment) -> None:
        sealed.close_writer()
        facts = sealed.sealed_facts()
        if facts is None:
            return
        live = len(self._segments) - 1
        try:
            if self._checkpoint_entries >= 2 * live + _CHECKPOINT_SLACK:
                self._rewrite_checkpoint()  # drop the entries of deleted segments
            else:
                append_entry(self.directory, facts)
                self._checkpoint_entries += 1
        except OSError as exc:  # the next open checks the segment instead
            log.warning("could not update the checkpoint of %s: %s", self.directory, exc)

    def _rewrite_checkpoint(self) -> None:
        """Write the checkpoint anew with one entry per sealed segment; failing only logs."""
        sealed = (segment.sealed_facts() for segment in self._segments[:-1])
        try:
            self._checkpoint_entries = rewrite_checkpoint(
                self.directory, (facts for facts in sealed if facts is not None)
            )
        except OSError as exc:
            log.warning("could not write the checkpoint of %s: %s", self.directory, exc)

    def _delete_segment(self, segment: FileSegment) -> None:
        segment.delete()  # closes its cached descriptor too

    def _after_deletions(self) -> None:
        try:
            fileio.fsync_directory(self.directory)
        except OSError as exc:
            raise self._fail(fileio.sync_failure(exc, self.directory)) from exc

    # -- fail-stop after a failed fsync (module docstring) -----------------------

    @property
    def failed(self) -> StorageFailed | None:
        """The failed fsync that stopped this log, or None while it is healthy."""
        return self._failed

    def _fail(self, failure: StorageFailed) -> StorageFailed:
        """Stop the log at its first failed fsync; returns the error to raise."""
        if self._failed is None:
            self._failure_owed = self.unsynced
            self._failed = failure
            log.error("%s (refusing writes to %s until restart)", failure.message, self.directory)
            if self.on_failure is not None:
                self.on_failure(failure)
        return self._refusal()

    def _refusal(self) -> StorageFailed:
        """A fresh copy of the failure (one raised instance would pile up tracebacks)."""
        failed = self._failed
        assert failed is not None
        return StorageFailed(failed.message, **failed.details)

    def append(self, entries: Sequence[Entry], timestamp_ms: int) -> int:
        if self._failed is not None:
            raise self._refusal()
        try:
            return super().append(entries, timestamp_ms)
        except StorageFailed as exc:  # a roll's fsync
            raise self._fail(exc) from exc

    def append_kafka(self, batch: bytes, count: int, timestamp_ms: int) -> int:
        if self._failed is not None:
            raise self._refusal()
        try:
            return super().append_kafka(batch, count, timestamp_ms)
        except StorageFailed as exc:
            raise self._fail(exc) from exc

    def enforce_retention(
        self, now_ms: int, retention_bytes: int | None, retention_ms: int | None
    ) -> int:
        if self._failed is not None:
            raise self._refusal()
        return super().enforce_retention(now_ms, retention_bytes, retention_ms)

    def delete_before(self, offset: int) -> int:
        if self._failed is not None:
            raise self._refusal()
        return super().delete_before(offset)

    # -- durability and lifecycle ------------------------------------------------

    @property
    def unsynced(self) -> bool:
        """Appends or new directories that :meth:`sync` would still fsync
        (False once the log failed: it never syncs again)."""
        return (
            not self._closed
            and self._failed is None
            and (self._segments[-1].unsynced or bool(self._new_entries))
        )

    def sync(self) -> None:
        """fdatasync the active segment (older ones were synced when they were sealed).

        The first sync of a new log also fsyncs the parent directories it
        created, so that the log's directory survives a power loss too.
        A failed log raises its :class:`~minibroker.errors.StorageFailed`
        every time, and syncs nothing.
        """
        self._check_open()
        if self._failed is not None:
            raise self._refusal()
        try:
            self._segments[-1].sync()
            if self._new_entries:
                self._sync_new_entries()
        except StorageFailed as exc:
            raise self._fail(exc) from exc

    def group_sync(self) -> None:
        """The group commit's sync: :meth:`sync`, except that a failed log
        raises its failure only to the first group commit after it failed,
        and only if writes no good sync covered were in it then: that round
        fails every confirmation waiting on them. Later rounds pass over it
        (its writes are refused, so nothing new waits on it), which keeps
        the other stores' confirmations going."""
        if self._failed is not None:
            if self._failure_owed:
                self._failure_owed = False
                raise self._refusal()
            return
        try:
            self.sync()
        finally:
            self._failure_owed = False  # raised to this round, or nothing owed

    def _sync_new_entries(self) -> None:
        SHARED_PENDING_DIRECTORIES.sync(self._new_entries)  # StorageFailed on failure
        self._new_entries = ()

    def close(self) -> None:
        """Write index files, sync, close every file and release the directory lock.

        Every segment is closed even if one fails; the first failure is raised.
        When all of it succeeded, the clean-shutdown marker is written (still
        under the lock) so that the next open can skip scanning the newest
        segment.
        """
        if self._closed:
            return
        self._closed = True
        if self._failed is not None:
            # Nothing is fsynced again, and no marker: the next open scans.
            for segment in self._segments:
                segment.release()
            os.close(self._lock_fd)
            return
        failure: Exception | None = None
        for segment in self._segments:
            try:
                segment.close()
            except (StorageError, StorageFull) as exc:
                failure = failure or exc
        if self._new_entries:  # a clean close leaves everything durable
            try:
                self._sync_new_entries()
            except (StorageError, StorageFull) as exc:
                failure = failure or exc
        try:
            if failure is None:
                self._mark_clean()
        finally:
            os.close(self._lock_fd)
        if failure is not None:
            raise failure

    def _mark_clean(self) -> None:
        """Write the clean-shutdown marker; failing to is only logged.

        Everything is on disk already, so a missing marker costs the next
        open a scan, nothing else: not a reason to fail the close.
        """
        active = self._segments[-1]
        end = active.clean_end()
        if end is None:
            return
        marker = CleanShutdown(active.base_offset, end)
        try:
            fileio.replace_file(self.directory, CLEAN_SHUTDOWN_FILE_NAME, marker.to_bytes())
        except OSError as exc:
            log.warning(
                "could not mark %s as closed cleanly (%s): the next open scans its newest segment",
                self.directory,
                exc,
            )

    def destroy(self) -> None:
        """Delete every segment and the lock file, and the directory if nothing else is in it.

        The directory's removal is made durable (its parent fsynced), so that
        a deleted queue or journal does not come back after a power loss.
        """
        was_open = not self._closed
        self._closed = True
        try:
            for segment in self._segments:
                segment.delete()
            for name in (CLEAN_SHUTDOWN_FILE_NAME, CHECKPOINT_FILE_NAME, LOCK_FILE_NAME):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.directory, name))
        finally:
            if was_open:
                os.close(self._lock_fd)
        try:
            os.rmdir(self.directory)
        except OSError:  # something else lives there: leave it
            return
        parent = os.path.dirname(os.path.abspath(self.directory))
        try:
            fileio.fsync_directory(parent)
        except OSError as exc:
            raise fileio.storage_error(exc, "syncing", parent) from exc


def _lock_directory(path: str) -> int:
    """Take an exclusive lock on the directory's lock file; fail fast if it is taken."""
    lock_path = os.path.join(path, LOCK_FILE_NAME)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise fileio.storage_error(exc, "opening", lock_path) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StorageError(f"log {path} is already open", path=path) from None
    return fd


def _take_marker(path: str) -> CleanShutdown | None:
    """Read the clean-shutdown marker, then delete it durably, before anything is written.

    From here on the log may change, so the marker must not outlive this
    open: if the process crashes later, the next open has to scan. Failing to
    delete it fails the open, since a stale marker could be trusted later.
    """
    marker_path = os.path.join(path, CLEAN_SHUTDOWN_FILE_NAME)
    with contextlib.suppress(OSError):  # left by a crash while writing one
        os.unlink(marker_path + ".tmp")
    try:
        with open(marker_path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s: %s", marker_path, exc)
        data = b""
    try:
        fileio.remove_file(path, CLEAN_SHUTDOWN_FILE_NAME)
    except OSError as exc:
        raise fileio.storage_error(exc, "deleting", marker_path) from exc
    marker = CleanShutdown.from_bytes(data)
    if marker is None:
        log.warning("ignoring the malformed clean-shutdown marker of %s", path)
    return marker


def _open_newest(
    path: str,
    base: int,
    index_interval_bytes: int,
    fd_cache: FdCache,
    verify: bool,
    marker: CleanShutdown | None,
) -> FileSegment | None:
    """The newest segment, trusted thanks to the clean-shutdown marker; None: scan it.

    Logs which way the segment is opened and, when the marker does not fit,
    why.
    """
    name = segment_file_name(base, LOG_SUFFIX)
    if marker is None:
        log.info("%s was not closed cleanly: scanning %s", path, name)
        return None
    if verify:
        log.debug("%s was closed cleanly, but verifying: scanning %s", path, name)
        return None
    if marker.base_offset != base:
        problem = f"it names segment {marker.base_offset}, the newest is {base}"
        segment = None
    else:
        segment, problem = FileSegment.open_clean(
            path, base, index_interval_bytes, fd_cache, marker.end
        )
    if segment is None:
        log.warning(
            "the clean-shutdown marker of %s does not match (%s): scanning %s",
            path,
            problem,
            name,
        )
        return None
    log.info("%s was closed cleanly: trusting %s without scanning it", path, name)
    return segment


def _base_offsets(path: str) -> tuple[list[int], set[int]]:
    """Base offsets of the ``<20 digits>.log`` files in ``path``, sorted, and of the
    ``.index`` files; one listing (a long history means tens of thousands of names).
    """
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise fileio.storage_error(exc, "listing", path) from exc
    found: dict[str, list[int]] = {LOG_SUFFIX: [], INDEX_SUFFIX: []}
    for name in names:
        digits, dot, suffix = name.partition(".")
        bases = found.get(dot + suffix)
        if bases is not None and len(digits) == _DIGITS and digits.isdigit():
            bases.append(int(digits))
    found[LOG_SUFFIX].sort()
    return found[LOG_SUFFIX], set(found[INDEX_SUFFIX])


def _recover(
    path: str,
    index_interval_bytes: int,
    start_offset: int,
    fd_cache: FdCache,
    verify: bool = False,
    marker: CleanShutdown | None = None,
    known: dict[int, SealedFacts] | None = None,
) -> tuple[list[FileSegment], RecoveryReport]:
    """Open every segment of the log in ``path`` (see the module docstring).

    An older segment the checkpoint (``known``) describes, ending where the
    next one begins, is taken from it without opening its files. Others are
    checked one at a time, each through a descriptor of its own that is
    closed once it is checked; only the newest keeps its file open.
    """
    known = known or {}
    bases, indexed = _base_offsets(path)
    _remove_orphan_indexes(path, indexed.difference(bases))
    if not bases:
        segment = FileSegment.create(path, start_offset, index_interval_bytes, fd_cache)
        try:
            fileio.fsync_directory(path)
        except OSError as exc:
            segment.delete()
            raise fileio.storage_error(exc, "syncing", path) from exc
        return [segment], RecoveryReport(segments=1, records=0, bytes_truncated=0)

    segments: list[FileSegment] = []
    truncated = 0
    removed = 0
    skipped = False
    lazy = 0
    try:
        for i, base in enumerate(bases):
            if i + 1 == len(bases):
                newest = _open_newest(path, base, index_interval_bytes, fd_cache, verify, marker)
                if newest is not None:
                    segments.append(newest)
                    skipped = True
                    break
            else:
                facts = known.get(base)
                if facts is not None and facts.next_offset == bases[i + 1]:
                    segments.append(
                        FileSegment.from_checkpoint(path, facts, index_interval_bytes, fd_cache)
                    )
                    lazy += 1
                    continue
                sealed = FileSegment.open_sealed(
                    path, base, index_interval_bytes, bases[i + 1], fd_cache, verify=verify
                )
                if sealed is not None:
                    segments.append(sealed)
                    continue
                log.error(
                    "segment %s is damaged; cutting it to its valid records and "
                    "deleting the %d segments after it",
                    base,
                    len(bases) - i - 1,
                )
            segment, cut = FileSegment.recover(path, base, index_interval_bytes, fd_cache)
            segments.append(segment)
            truncated += cut
            if cut:
                log.warning("cut %d bytes of torn or corrupt records off %s", cut, segment.log_path)
            for later in bases[i + 1 :]:
                truncated += _delete_segment_files(path, later)
                removed += 1
            break
        if removed:
            fileio.fsync_directory(path)
    except OSError as exc:
        for segment in segments:
            segment.release()
        raise fileio.storage_error(exc, "recovering", path) from exc
    except BaseException:
        for segment in segments:
            segment.release()
        raise
    records = segments[-1].next_offset - segments[0].base_offset
    return segments, RecoveryReport(len(segments), records, truncated, removed, skipped, lazy)


def _delete_segment_files(path: str, base: int) -> int:
    """Delete one segment's files without opening it; return the bytes deleted."""
    deleted = 0
    for suffix in (LOG_SUFFIX, INDEX_SUFFIX):
        file_path = os.path.join(path, segment_file_name(base, suffix))
        try:
            if suffix == LOG_SUFFIX:
                deleted = os.path.getsize(file_path)
            os.unlink(file_path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise fileio.storage_error(exc, "deleting", file_path) from exc
    return deleted


def _remove_orphan_indexes(path: str, orphans: set[int]) -> None:
    """Index files whose segment is gone (a crash during retention) are deleted."""
    for base in sorted(orphans):
        _delete_segment_files(path, base)
