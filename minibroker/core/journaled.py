"""A model whose durable state is an optional journal: ``sync``, ``close``, ``destroy``.

A model keeps a journal only where it has something to keep on disk (a data
directory, a durable queue's bindings, an AMQP vhost's declarations); without
one the three lifecycle calls the namespace makes are no-ops. Written once
here for every such model (``core/topics.py``, ``amqp/durable.py``) and for
the state journal, whose store is its optional journal (``core/state_journal.py``).
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


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
