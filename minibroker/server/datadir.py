"""The ``--data-dir`` layout: where durable queues and logs keep their segments.

    DATA_DIR/
      namespaces/
        default/                 the "" namespace
          logs/events/           one SegmentedLog directory per log
            00000000000000000000.log
            00000000000000000000.index
          queues/jobs/           one journal (also a SegmentedLog) per durable queue
        ns.tenant-a/             namespace "tenant-a"

Names are percent-encoded where the file system would misread them ("/",
a leading "."), so any valid queue or log name maps to exactly one directory.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from functools import partial
from pathlib import Path
from urllib.parse import quote, unquote

from minibroker.errors import StorageError, StorageFailed
from minibroker.storage import DEFAULT_SEGMENT_BYTES, LogStore, SegmentedLog, fileio
from minibroker.storage.new_directories import SHARED_PENDING_DIRECTORIES, make_directories

DEFAULT_NAMESPACE_DIR = "default"
#: Held (flock) by the broker that owns the directory, for as long as it runs.
LOCK_FILE = "minibroker.lock"
#: The store kind of logs (core/logs.py); every other kind is a journal.
LOG_KIND = "log"
NAMESPACE_PREFIX = "ns."


def encode_name(name: str) -> str:
    """A file-system-safe, reversible directory name for ``name``."""
    encoded = quote(name, safe="-_.@+=,")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return encoded


def namespace_dir_name(namespace: str) -> str:
    return NAMESPACE_PREFIX + namespace if namespace else DEFAULT_NAMESPACE_DIR


class DataDirectory:
    """The StorageOpener for a data directory (see core/namespace.py)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        # A brand-new data directory's own name must survive a power loss
        # too; the stores inside make their own directories durable.
        for parent in make_directories(str(self.root)):
            fileio.fsync_directory(parent)
        self._lock_fd: int | None = None
        #: Stores whose fsync failed (path -> the error), fail-stop until the
        #: broker restarts (docs/storage.md, "A failed fsync"): reported by
        #: /metrics and /health, and never reopened by this broker.
        self.failed: dict[str, StorageFailed] = {}
        # Opening the directory is the restart that recovers from what is on
        # disk: failed directory fsyncs of an earlier broker of this process
        # (tests, embedded brokers) are not this one's.
        SHARED_PENDING_DIRECTORIES.forget_failures(str(self.root))

    def lock(self) -> None:
        """Claim the directory for this broker; StorageError if another one runs on it.

        The server calls this at start-up. (Tools and tests that only inspect
        a data directory don't.) The lock is an flock, so a killed broker
        releases it with its process.
        """
        if self._lock_fd is None:
            self._lock_fd = _lock(self.root / LOCK_FILE)

    def close(self) -> None:
        """Release the directory for another broker (after every store is closed)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _kind_dir(self, namespace: str, kind: str) -> Path:
        return self.root / "namespaces" / namespace_dir_name(namespace) / f"{kind}s"

    def path_of(self, namespace: str, kind: str, name: str) -> Path:
        return self._kind_dir(namespace, kind) / encode_name(name)

    def open(self, namespace: str, kind: str, name: str, *, segment_bytes: int | None) -> LogStore:
        path = self.path_of(namespace, kind, name)
        failure = self.failed.get(str(path))
        if failure is not None:
            # Its files hold what a failed fsync left: only a restart reads them again.
            raise StorageFailed(failure.message, **failure.details)
        store = SegmentedLog.open(
            path,
            segment_bytes=segment_bytes or DEFAULT_SEGMENT_BYTES,
            # Journals (queues, bindings, log metadata) are replayed record by
            # record at start: check all of them while opening, so a damaged
            # record anywhere cuts the journal to its valid prefix instead of
            # failing the replay, which kept the broker from starting. Logs
            # keep the cheap check of older segments (they can be large and
            # are not replayed); a damaged record in one fails its CRC check
            # when read.
            verify=kind != LOG_KIND,
        )
        store.on_failure = partial(self._store_failed, str(path))
        return store

    def _store_failed(self, path: str, failure: StorageFailed) -> None:
        self.failed.setdefault(path, failure)

    def existing(self, namespace: str, kind: str) -> list[str]:
        directory = self._kind_dir(namespace, kind)
        if not directory.is_dir():
            return []
        return sorted(unquote(entry.name) for entry in directory.iterdir() if entry.is_dir())

    def existing_namespaces(self) -> list[str]:
        """Namespaces that have something on disk (recovered at start-up)."""
        directory = self.root / "namespaces"
        if not directory.is_dir():
            return []
        found = []
        for entry in sorted(directory.iterdir()):
            if entry.name == DEFAULT_NAMESPACE_DIR:
                found.append("")
            elif entry.name.startswith(NAMESPACE_PREFIX):
                found.append(entry.name[len(NAMESPACE_PREFIX) :])
        return found

    def remove(self, namespace: str, kind: str, name: str) -> None:
        _remove_tree(self.path_of(namespace, kind, name))

    def remove_namespace(self, namespace: str) -> None:
        """Delete a dropped namespace's directory (its stores are already
        gone; the empty directories would bring it back at start-up)."""
        _remove_tree(self.root / "namespaces" / namespace_dir_name(namespace))


def _remove_tree(path: Path) -> None:
    """Delete ``path`` and everything under it, durably (the parent is fsynced)."""
    shutil.rmtree(path, ignore_errors=True)
    if path.parent.is_dir():
        fileio.fsync_directory(str(path.parent))


def _lock(path: Path) -> int:
    """Two brokers on one data directory would corrupt each other's files: refuse."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StorageError(
            f"the data directory {path.parent} is in use by another running broker",
            path=str(path.parent),
        ) from None
    return fd
