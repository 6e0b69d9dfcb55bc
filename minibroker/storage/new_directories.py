"""Making new directories durable: the parent's fsync, once per group commit.

A file's fsync makes its bytes durable, not its name: the entry that names a
new file or directory lives in the parent directory, which needs an fsync of
its own. A log creates its segment files inside its directory and fsyncs that
directory (:mod:`minibroker.storage.commitlog`), but the log's directory is
itself new, often with new parents (``namespaces/<ns>/queues/`` on a first
declaration): after a power loss (not a killed process: the page cache
survives that) a new queue's or log's directory could be gone although every
byte inside it was fsynced.

So opening a store records the directories whose entries changed (the
parent of each directory it created), and the store's next ``sync()`` fsyncs
them, which is the group commit's sync under ``--fsync batch``, the write's
own under ``always``, and never under ``never``, where the broker fsyncs
nothing. One registry is shared by every store of the process: a directory
is fsynced once for every store created in it since its last fsync, so a
hundred queues declared in one burst cost one fsync of ``queues/``, not a
hundred.
"""

from __future__ import annotations

import os

from minibroker.storage import fileio


def make_directories(path: str) -> tuple[str, ...]:
    """Create ``path`` and any missing parents; return the directories to fsync.

    Those are the parents of every directory created here, deepest first
    (empty when ``path`` existed). A directory made meanwhile by someone else
    is taken as it is.
    """
    missing: list[str] = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    changed: list[str] = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue
        changed.append(os.path.dirname(directory))
    changed.reverse()
    return tuple(changed)


class PendingDirectories:
    """Directories with entries not yet fsynced, shared by the stores created in them."""

    def __init__(self) -> None:
        self._pending: set[str] = set()
        #: Directory fsyncs done, for tests and metrics.
        self.fsyncs = 0

    def add(self, directories: tuple[str, ...]) -> None:
        """New entries were made in ``directories``."""
        self._pending.update(directories)

    def __contains__(self, directory: str) -> bool:
        return directory in self._pending

    def sync(self, directories: tuple[str, ...]) -> None:
        """fsync those of ``directories`` with entries made since their last fsync.

        Raises the ``OSError`` of a failed fsync; that directory stays
        pending, so the next sync tries again.
        """
        pending = self._pending
        for directory in directories:
            if directory in pending:
                fileio.fsync_directory(directory)
                pending.discard(directory)
                self.fsyncs += 1


#: The registry every store of the process shares (as the descriptors of
#: :data:`~minibroker.storage.fd_cache.SHARED_FD_CACHE`).
SHARED_PENDING_DIRECTORIES = PendingDirectories()
