"""A model whose durable state is an optional journal: ``sync``, ``close``, ``destroy``.

A model keeps a journal only where it has something to keep on disk (a data
directory, a durable queue's bindings, an AMQP vhost's declarations); without
one the three lifecycle calls the namespace makes are no-ops. Written once
here for every such model (``core/topics.py``, ``amqp/durable.py``) and for
the journals kept in one store made by their first write (:class:`StoreJournal`:
``core/state_journal.py``, ``core/binding_journal.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from minibroker.errors import StorageFailed
from minibroker.log_store import Entry, LogStore


class JournalFiles(Protocol):
    """The lifecycle of a journal's files."""

    def sync(self) -> None: ...

    def close(self) -> None: ...

    def destroy(self) -> None: ...


J = TypeVar("J", bound=JournalFiles)


class Journaled(Generic[J]):
    """``sync``/``close``/``destroy`` passed on to ``_journal``, when there is one."""

    _journal: J | None

    def sync(self) -> None:
        """fsync the journal (the group commit's turn)."""
        if self._journal is not None:
            self._journal.sync()

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()

    def destroy(self) -> None:
        """The namespace is dropped: delete the journal's files."""
        if self._journal is not None:
            self._journal.destroy()


class StoreJournal(Journaled[LogStore]):
    """A journal in one store, created by its first write: a namespace that
    never writes one gets no file, and needs no room on disk to exist.

    The store is ``_journal`` (None until then), so ``sync``/``close``/``destroy``
    are :class:`Journaled`'s. Every append reports the write (``on_write``,
    the broker's ``Durability.written``) once it is in the store.
    """

    def __init__(
        self, open_store: Callable[[], LogStore], on_write: Callable[[], None], *, exists: bool
    ) -> None:
        self._open_store = open_store
        self._on_write = on_write
        self._journal: LogStore | None = open_store() if exists else None

    def _store_for_write(self) -> LogStore:
        if self._journal is None:
            self._journal = self._open_store()
        return self._journal

    def sync(self) -> None:
        """The group commit's fsync of the store (``LogStore.group_sync``: a
        store whose fsync failed raises that once, then is passed over)."""
        if self._journal is not None:
            self._journal.group_sync()

    def _append(self, records: Sequence[Entry], now_ms: int) -> None:
        self._store_for_write().append(records, now_ms)
        self._on_write()

    def report_unsynced(self) -> None:
        """A client is about to be told that something this journal holds
        exists, without a new write (a re-declaration): if the store has
        writes not yet fsynced (the group commit has not run), report a
        write, so the answer waits for the sync that makes them durable
        (under ``always`` that sync runs here, and raises). If an fsync of
        the store failed, what it holds may not be on disk and no retry can
        tell: the answer is its ``storage_failed`` (docs/storage.md)."""
        report_unsynced(self._journal, self._on_write)


def report_unsynced(store: LogStore | None, on_write: Callable[[], None]) -> None:
    """Hold an answer that says ``store``'s contents exist until they are on
    disk: report a write when it has unsynced ones; raise its failure when
    an fsync of it failed (never answer "exists" from a retried sync)."""
    if store is None:
        return
    failed = store.failed
    if failed is not None:
        raise StorageFailed(failed.message, **failed.details)
    if store.unsynced:
        on_write()
