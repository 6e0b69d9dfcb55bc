"""The few file-system calls the disk log makes, and how their failures are reported.

Everything that writes log bytes goes through :func:`write_all`, which calls the
module attribute :data:`pwrite`. That attribute is the seam the tests use to
simulate a full disk or an I/O error (``monkeypatch.setattr(fileio, "pwrite",
...)``) without filling a real disk.

The syncs are seams too (:data:`datasync`, :data:`fsync_file`,
:func:`fsync_directory`), so tests can fail an fsync on purpose.

Writes are unbuffered (``os.pwrite`` on a raw descriptor, at an explicit
position): when one fails, the caller knows exactly which bytes may have
reached the file and can cut them off again, leaving the log as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from typing import Final

from minibroker.errors import StorageError, StorageFailed, StorageFull

#: ``os.pwrite``, looked up at call time so tests can replace it.
pwrite: Callable[[int, bytes | memoryview, int], int] = os.pwrite

_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})

#: fdatasync flushes the data and the size, which is all a reader needs;
#: platforms without it (macOS) fall back to fsync.
datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


def write_all(fd: int, data: bytes, position: int) -> None:
    """Write all of ``data`` at ``position``, looping over short writes."""
    view = memoryview(data)
    while view:
        written = pwrite(fd, view, position)
        if written <= 0:  # a zero-byte write would loop forever
            raise OSError(errno.EIO, "write made no progress")
        view = view[written:]
        position += written


#: ``os.fsync`` of a whole file (an index file, a directory), looked up at call
#: time like :data:`datasync` so tests can fail it.
fsync_file: Callable[[int], None] = os.fsync


def fsync_directory(path: str) -> None:
    """fsync a directory so that file creations and deletions in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync_file(fd)
    finally:
        os.close(fd)


def storage_error(exc: OSError, action: str, path: str) -> StorageFull | StorageError:
    """The broker error for a failed file operation: StorageFull for a full disk."""
    details = {"errno": exc.errno, "path": path}
    if exc.errno in _FULL_ERRNOS:
        return StorageFull(f"disk full while {action} {path}", **details)
    return StorageError(f"{action} {path} failed: {exc.strerror or exc}", **details)


def sync_failure(exc: OSError, path: str) -> StorageFailed:
    """The broker error for a failed fsync or fdatasync of ``path``: fatal for its store.

    Whatever the errno (EIO, and ENOSPC or EDQUOT on file systems that
    allocate at writeback), the kernel may have dropped the dirty pages and
    marked them clean, so a retried fsync proves nothing; the store that
    raises this refuses durable writes until the broker restarts.
    """
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return StorageFailed(
        f"an fsync of {path} failed ({name}: {exc.strerror or exc}); data written since "
        "the last good sync may not be on disk; restart the broker to recover from "
        "what is on disk",
        errno=exc.errno,
        path=path,
    )


def replace_file(directory: str, name: str, data: bytes) -> None:
    """Make ``directory/name`` hold exactly ``data``, all or nothing, durably.

    Written to a temporary file first, fsynced, renamed over ``name`` and the
    directory fsynced: after a crash at any point the file is either absent
    (or its old version) or complete, never half written.
    """
    path = os.path.join(directory, name)
    temporary = path + ".tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temporary, flags, 0o644)
    try:
        try:
            write_all(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_directory(directory)


def remove_file(directory: str, name: str) -> bool:
    """Delete ``directory/name`` durably (directory fsynced); False if it did not exist."""
    try:
        os.unlink(os.path.join(directory, name))
    except FileNotFoundError:
        return False
    fsync_directory(directory)
    return True
