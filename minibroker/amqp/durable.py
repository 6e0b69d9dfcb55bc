"""What a vhost keeps on disk: durable exchanges, their bindings and queue declarations.

The core journals queues, their messages and options (``x-message-ttl``,
``x-max-length``, ``x-overflow`` are core options) and the bindings of topic
exchanges (the core's topic bindings). What only AMQP knows survives a
restart here, in the namespace's state journal (``Namespace.state_journal``,
one small store per namespace, opened by the core):

* durable exchanges (type, auto_delete, internal, arguments);
* bindings whose source and destination are both durable: a queue bound to a
  direct, fanout or headers exchange, and exchange-to-exchange bindings;
* durable queues' declarations (exclusive, auto_delete and the arguments:
  ``x-expires``, ``x-dead-letter-*`` and the rest, kept for the
  equivalence check of a redeclaration).

Each entry's name is a JSON array naming the object (so any exchange name or
routing key is unambiguous), its value an AMQP field table encoded by pamqp,
so argument types (a long-long 60000, a boolean) come back exactly as they
were declared.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from pamqp import encode

from minibroker.amqp import decoding
from minibroker.amqp.errors import INTERNAL_ERROR, HardError
from minibroker.core.journaled import Journaled
from minibroker.core.state_journal import StateJournal
from minibroker.errors import BrokerError

if TYPE_CHECKING:
    from minibroker.core.broker import Clock

log = logging.getLogger("minibroker.amqp")

#: The state journal's name in each namespace.
JOURNAL: Final = "amqp"
#: What a binding's destination is.
QUEUE: Final = "queue"
EXCHANGE: Final = "exchange"


@dataclass(frozen=True, slots=True)
class SavedExchange:
    name: str
    type: str
    auto_delete: bool
    internal: bool
    arguments: dict[str, object]


@dataclass(frozen=True, slots=True)
class SavedBinding:
    source: str
    #: QUEUE or EXCHANGE.
    kind: str
    destination: str
    key: str
    arguments: dict[str, object]


@dataclass(frozen=True, slots=True)
class SavedQueue:
    name: str
    exclusive: bool
    auto_delete: bool
    arguments: dict[str, object]


@dataclass(slots=True)
class Saved:
    """Everything read back from a vhost's journal."""

    exchanges: list[SavedExchange] = field(default_factory=list)
    bindings: list[SavedBinding] = field(default_factory=list)
    queues: list[SavedQueue] = field(default_factory=list)


def cannot_write(exc: BrokerError) -> HardError:
    """What a client is told when durable state cannot be written or synced
    (StorageFull, StorageError): the server cannot keep what it would declare,
    a connection error, as RabbitMQ's internal errors are."""
    return HardError(INTERNAL_ERROR, f"cannot write durable state: {exc.message}")


def _name(*parts: str) -> str:
    return json.dumps(parts, ensure_ascii=False)


def _table(value: dict[str, object]) -> bytes:
    return encode.field_table(value)  # type: ignore[arg-type]


def _untable(data: bytes) -> dict[str, object]:
    return decoding.field_table(data)[0]


class VhostJournal(Journaled[StateJournal]):
    """A vhost's durable AMQP state; every method is a no-op without a data directory."""

    def __init__(self, journal: StateJournal | None, clock: Clock) -> None:
        self._journal = journal
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._journal is not None

    def _now_ms(self) -> int:
        return self._clock.last_ms

    def load(self) -> Saved:
        """Read the entries back (entries that do not decode are skipped, and logged)."""
        saved = Saved()
        if self._journal is None:
            return saved
        for name, value in self._journal.entries.items():
            try:
                kind, *parts = json.loads(name)
                table = _untable(value)
                if kind == EXCHANGE:
                    saved.exchanges.append(
                        SavedExchange(
                            parts[0],
                            str(table["type"]),
                            bool(table["auto_delete"]),
                            bool(table["internal"]),
                            dict(table["arguments"]),  # type: ignore[call-overload]
                        )
                    )
                elif kind == "binding":
                    source, dest_kind, destination, key = parts
                    saved.bindings.append(SavedBinding(source, dest_kind, destination, key, table))
                elif kind == QUEUE:
                    saved.queues.append(
                        SavedQueue(
                            parts[0],
                            bool(table["exclusive"]),
                            bool(table["auto_delete"]),
                            dict(table["arguments"]),  # type: ignore[call-overload]
                        )
                    )
            except (ValueError, KeyError, TypeError) as exc:
                log.error("skipping a damaged AMQP state entry %r: %r", name, exc)
        return saved

    # ----------------------------------------------------------- writing

    def report_unsynced(self) -> None:
        """A durable object is redeclared: the answer waits for the sync of what
        is not on disk yet (StateJournal.report_unsynced); a failure is the
        same error as a failed write."""
        if self._journal is None:
            return
        try:
            self._journal.report_unsynced()
        except BrokerError as exc:  # under fsync=always the sync runs here
            raise cannot_write(exc) from None

    def _put(self, name: str, value: bytes) -> None:
        if self._journal is None:
            return
        try:
            self._journal.put(name, value, self._now_ms())
        except BrokerError as exc:  # StorageFull, StorageError: nothing was changed
            raise cannot_write(exc) from None

    def _delete(self, name: str) -> None:
        """Forget an entry. A failed write is logged, not raised: the object is gone
        in memory either way, and a stale entry is dropped at recovery when what
        it refers to is missing."""
        if self._journal is None or name not in self._journal.entries:
            return
        try:
            self._journal.delete(name, self._now_ms())
        except BrokerError as exc:
            log.error("could not remove AMQP state entry %r: %s", name, exc.message)

    def save_exchange(self, saved: SavedExchange) -> None:
        self._put(
            _name(EXCHANGE, saved.name),
            _table(
                {
                    "type": saved.type,
                    "auto_delete": saved.auto_delete,
                    "internal": saved.internal,
                    "arguments": saved.arguments,
                }
            ),
        )

    def forget_exchange(self, name: str) -> None:
        self._delete(_name(EXCHANGE, name))

    def save_binding(self, saved: SavedBinding) -> None:
        self._put(
            _name("binding", saved.source, saved.kind, saved.destination, saved.key),
            _table(saved.arguments),
        )

    def forget_binding(self, source: str, kind: str, destination: str, key: str) -> None:
        self._delete(_name("binding", source, kind, destination, key))

    def save_queue(self, saved: SavedQueue) -> None:
        self._put(
            _name(QUEUE, saved.name),
            _table(
                {
                    "exclusive": saved.exclusive,
                    "auto_delete": saved.auto_delete,
                    "arguments": saved.arguments,
                }
            ),
        )

    def forget_queue(self, name: str) -> None:
        self._delete(_name(QUEUE, name))

