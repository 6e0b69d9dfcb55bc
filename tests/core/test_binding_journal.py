"""Bindings of durable queues survive a restart (durable subscriptions); others don't."""

from __future__ import annotations

from pathlib import Path

from minibroker.core import binding_journal
from minibroker.core.broker import Broker
from minibroker.core.queue_options import QueueOptions
from minibroker.protocol.frames import MessageIn
from minibroker.server.datadir import DataDirectory

NOW = 1000.0


def open_broker(data_dir: Path) -> Broker:
    return Broker(storage=DataDirectory(data_dir))


def test_durable_binding_survives_restart_and_keeps_routing(tmp_path: Path) -> None:
    broker = open_broker(tmp_path)
    ns = broker.namespace("app")
    ns.queues.declare("audit", QueueOptions(durable=True), NOW)
    ns.queues.declare("scratch", QueueOptions(durable=False), NOW)
    assert ns.topics.bind("audit", "orders.#")
    assert ns.topics.bind("scratch", "orders.#")
    broker.sync_storage()
    broker.close()

    broker = open_broker(tmp_path)
    ns = broker.namespace("app")
    assert ns.topics.bindings() == [("audit", "orders.#")]
    result = ns.topics.publish("orders.created", [MessageIn(b"o-1")], NOW)
    assert result.queues == 1
    assert ns.queues.get("audit").statistics().ready == 1


def test_unbind_and_queue_delete_are_remembered(tmp_path: Path) -> None:
    broker = open_broker(tmp_path)
    ns = broker.namespace("")
    for name in ("a", "b"):
        ns.queues.declare(name, QueueOptions(durable=True), NOW)
    ns.topics.bind("a", "x.*")
    ns.topics.bind("a", "y.*")
    ns.topics.bind("b", "z.#")
    assert ns.topics.unbind("a", "x.*")
    ns.queues.delete("b", NOW)
    broker.close()

    broker = open_broker(tmp_path)
    ns = broker.namespace("")
    assert ns.topics.bindings() == [("a", "y.*")]


def test_bind_churn_is_compacted(tmp_path: Path, monkeypatch: object) -> None:
    broker = open_broker(tmp_path)
    ns = broker.namespace("")
    ns.queues.declare("q", QueueOptions(durable=True), NOW)
    ns.topics.bind("q", "keep.me")
    for i in range(3 * binding_journal.COMPACT_SLACK):
        ns.topics.bind("q", f"churn.{i}")
        ns.topics.unbind("q", f"churn.{i}")
    journal = ns.topics._journal
    assert journal is not None
    store = journal._journal
    assert store is not None
    # Without compaction the store would hold ~6000 records.
    assert store.next_offset - store.first_offset < 2 * binding_journal.COMPACT_SLACK + 10
    broker.close()

    broker = open_broker(tmp_path)
    assert broker.namespace("").topics.bindings() == [("q", "keep.me")]


def test_bound_copies_carry_their_topic(tmp_path: Path) -> None:
    broker = Broker()
    ns = broker.namespace("")
    ns.queues.declare("audit", QueueOptions(), NOW)
    ns.topics.bind("audit", "orders.#")
    ns.topics.publish("orders.eu.created", [MessageIn(b"o-1", {"k": "v"})], NOW)
    [copy] = ns.queues.get("audit").inspect(10).ready
    assert copy.headers == {"k": "v", "x-topic": "orders.eu.created"}
