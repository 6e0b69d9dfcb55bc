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

from minibroker.errors import StorageFailed
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
    """Directories with entries not yet fsynced, shared by the stores created in them.

    A directory whose fsync failed is never fsynced again: a retry that
    succeeds proves nothing (the kernel may have dropped what the failed one
    should have written, docs/storage.md "A failed fsync"), so every store
    that needs it, then or later, fails with that error until the registry
    forgets it (:meth:`forget_failures`, when a broker opens its data
    directory again: the restart that recovers from what is on disk).
    """

    def __init__(self) -> None:
        self._pending: set[str] = set()
        #: Directory -> the failure of its fsync.
        self._failed: dict[str, StorageFailed] = {}
        #: Directory fsyncs done, for tests and metrics.
        self.fsyncs = 0

    def add(self, directories: tuple[str, ...]) -> None:
        """New entries were made in ``directories``."""
        self._pending.update(directories)

    def __contains__(self, directory: str) -> bool:
        return directory in self._pending

    def sync(self, directories: tuple[str, ...]) -> None:
        """fsync those of ``directories`` with entries made since their last fsync.

        Raises :class:`~minibroker.errors.StorageFailed` for a directory whose
        fsync fails now or failed before.
        """
        pending = self._pending
        failed = self._failed
        for directory in directories:
            failure = failed.get(directory)
            if failure is not None:  # a copy: one instance raised again piles up tracebacks
                raise StorageFailed(failure.message, **failure.details)
            if directory in pending:
                try:
                    fileio.fsync_directory(directory)
                except OSError as exc:
                    failure = failed[directory] = fileio.sync_failure(exc, directory)
                    raise failure from exc
                pending.discard(directory)
                self.fsyncs += 1

    def forget_failures(self, root: str) -> None:
        """Forget the failed fsyncs of ``root`` and the directories under it.

        For a broker that opens this data directory anew in the same process
        (tests, an embedded broker restarted): it starts from what is on
        disk, as a new process would. Their entries stay pending.
        """
        prefix = os.path.join(os.path.abspath(root), "")
        for directory in [d for d in self._failed if os.path.join(d, "").startswith(prefix)]:
            del self._failed[directory]
            self._pending.add(directory)


#: The registry every store of the process shares (as the descriptors of
#: :data:`~minibroker.storage.fd_cache.SHARED_FD_CACHE`).
SHARED_PENDING_DIRECTORIES = PendingDirectories()
