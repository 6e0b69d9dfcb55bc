"""The few file-system calls the disk log makes, and how their failures are reported.

Everything that writes log bytes goes through :func:`write_all`, which calls the
module attribute :data:`pwrite`. That attribute is the seam the tests use to
simulate a full disk or an I/O error (``monkeypatch.setattr(fileio, "pwrite",
...)``) without filling a real disk.

Writes are unbuffered (``os.pwrite`` on a raw descriptor, at an explicit
position): when one fails, the caller knows exactly which bytes may have
reached the file and can cut them off again, leaving the log as it was.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Final

from minibroker.core.errors import StorageError, StorageFull

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


def fsync_directory(path: str) -> None:
    """fsync a directory so that file creations and deletions in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def storage_error(exc: OSError, action: str, path: str) -> StorageFull | StorageError:
    """The broker error for a failed file operation: StorageFull for a full disk."""
    details = {"errno": exc.errno, "path": path}
    if exc.errno in _FULL_ERRNOS:
        return StorageFull(f"disk full while {action} {path}", **details)
    return StorageError(f"{action} {path} failed: {exc.strerror or exc}", **details)
