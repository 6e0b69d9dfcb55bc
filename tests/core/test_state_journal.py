"""A front end's state journal (Namespace.state_journal): replayed on open, compacted, lazy."""

from __future__ import annotations

from pathlib import Path

from minibroker.core import state_journal
from minibroker.core.broker import Broker
from minibroker.server.datadir import DataDirectory


def open_broker(data_dir: Path) -> Broker:
    return Broker(storage=DataDirectory(data_dir))


def test_entries_survive_a_restart_with_their_changes(tmp_path: Path) -> None:
    broker = open_broker(tmp_path)
    journal = broker.namespace("app").state_journal("front")
    assert journal is not None
    journal.put("a", b"\x00one", 1)
    journal.put("b", b"two", 2)
    journal.put("a", b"three", 3)
    journal.delete("b", 4)
    journal.delete("never", 5)  # nothing to delete: nothing written
    journal.sync()
    journal.close()
    broker.close()

    broker = open_broker(tmp_path)
    assert broker.namespace("app").has_state("front")
    journal = broker.namespace("app").state_journal("front")
    assert journal is not None and journal.entries == {"a": b"three"}


def test_nothing_is_created_until_the_first_write(tmp_path: Path) -> None:
    broker = open_broker(tmp_path)
    ns = broker.namespace("app")
    journal = ns.state_journal("front")
    assert journal is not None and journal.entries == {}
    assert not ns.has_state("front")
    journal.put("k", b"v", 1)
    assert ns.has_state("front")


def test_without_a_data_directory_there_is_no_journal() -> None:
    ns = Broker().namespace("")
    assert ns.state_journal("front") is None
    assert not ns.has_state("front")


def test_churn_is_compacted_into_a_snapshot(tmp_path: Path) -> None:
    broker = open_broker(tmp_path)
    journal = broker.namespace("").state_journal("front")
    assert journal is not None
    journal.put("kept", b"k", 1)
    for i in range(3 * state_journal.COMPACT_SLACK):
        journal.put("churn", str(i).encode(), 2)
    journal.delete("churn", 3)
    store = journal._journal
    assert store is not None
    assert store.next_offset - store.first_offset < 2 * state_journal.COMPACT_SLACK
    journal.close()
    broker.close()

    journal = open_broker(tmp_path).namespace("").state_journal("front")
    assert journal is not None and journal.entries == {"kept": b"k"}
