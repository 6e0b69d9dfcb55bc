"""The object limits (minibroker/core/config.py::Limits, docs/operations.md).

Queues, logs, bindings, consumer groups per namespace and namespaces per
broker: creating one past its limit is refused with ``limit_exceeded``
over the native protocol, and what exists keeps working. Limits apply to
creation only: a data directory holding more than a lowered limit starts.
Small limits throughout, so no test makes more than a handful of objects.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import minibroker
from minibroker.config import ServerConfig
from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig, Limits
from minibroker.core.log_options import LogOptions
from minibroker.core.queue_options import QueueOptions
from minibroker.errors import LimitExceeded
from minibroker.storage import MemoryLog


def config(**limits: int) -> ServerConfig:
    return ServerConfig(limits=Limits(**limits))


def core(**limits: int) -> Broker:
    return Broker(CoreConfig(limits=Limits(**limits)), memory_log=MemoryLog)


async def test_a_queue_past_the_namespace_limit_is_refused_over_the_wire() -> None:
    async with (
        minibroker.open_broker(config=config(max_queues_per_namespace=2)) as broker,
        broker.connect() as client,
    ):
        assert await client.declare_queue("a") is True
        assert await client.declare_queue("b") is True
        assert await client.declare_queue("a") is False  # redeclaring is not creating
        with pytest.raises(LimitExceeded) as refused:
            await client.declare_queue("c")
        assert refused.value.message == (
            "cannot declare queue 'c': queue limit in namespace '' (2) is reached"
        )
        assert refused.value.details["limit"] == 2
        await client.delete_queue("a")
        assert await client.declare_queue("c") is True  # room again


def test_the_limit_is_per_namespace() -> None:
    broker = core(max_queues_per_namespace=1)
    broker.namespace("one").queues.declare("q", QueueOptions(), 0.0)
    broker.namespace("two").queues.declare("q", QueueOptions(), 0.0)
    with pytest.raises(LimitExceeded):
        broker.namespace("one").queues.declare("other", QueueOptions(), 0.0)


def test_queues_and_logs_are_also_bounded_over_the_whole_broker() -> None:
    broker = core(max_queues_total=3, max_logs_total=2)
    broker.namespace("one").queues.declare("a", QueueOptions(), 0.0)
    broker.namespace("one").queues.declare("b", QueueOptions(), 0.0)
    broker.namespace("two").queues.declare("a", QueueOptions(), 0.0)
    with pytest.raises(LimitExceeded, match=r"queue limit of the broker \(3\) is reached"):
        broker.namespace("three").queues.declare("a", QueueOptions(), 0.0)
    broker.namespace("one").logs.create("l", LogOptions(), 0.0)
    broker.namespace("two").logs.create("l", LogOptions(), 0.0)
    with pytest.raises(LimitExceeded, match=r"log limit of the broker \(2\) is reached"):
        broker.namespace("one").logs.create("m", LogOptions(), 0.0)
    assert broker.namespace("one").logs.room() == (0, "of the broker (2)")
    broker.drop_namespace("two")  # gives its queue and log back
    broker.namespace("three").queues.declare("a", QueueOptions(), 0.0)
    broker.namespace("one").logs.create("m", LogOptions(), 0.0)
    broker.namespace("one").queues.delete("a", 0.0)
    broker.namespace("one").logs.delete("l", 0.0)
    namespaces = broker.namespaces.values()
    assert broker.queue_total == sum(len(ns.queues) for ns in namespaces) == 2
    assert broker.log_total == sum(len(ns.logs) for ns in namespaces) == 1


async def test_a_log_past_the_namespace_limit_is_refused_over_the_wire() -> None:
    async with (
        minibroker.open_broker(config=config(max_logs_per_namespace=1)) as broker,
        broker.connect() as client,
    ):
        assert await client.create_log("events") is True
        with pytest.raises(LimitExceeded, match=r"cannot create log 'more': log limit"):
            await client.create_log("more")


async def test_a_binding_past_the_namespace_limit_is_refused_over_the_wire() -> None:
    async with (
        minibroker.open_broker(config=config(max_bindings_per_namespace=2)) as broker,
        broker.connect() as client,
    ):
        await client.declare_queue("q")
        assert await client.bind("q", "a.*") is True
        assert await client.bind("q", "b.#") is True
        assert await client.bind("q", "a.*") is False  # already bound: no new binding
        with pytest.raises(LimitExceeded, match=r"binding limit in namespace '' \(2\)"):
            await client.bind("q", "c")
        assert await client.unbind("q", "a.*") is True
        assert await client.bind("q", "c") is True


def test_deleting_a_queue_gives_its_bindings_back() -> None:
    broker = core(max_bindings_per_namespace=2)
    ns = broker.namespace("")
    ns.queues.declare("q", QueueOptions(), 0.0)
    ns.topics.bind("q", "a")
    ns.topics.bind("q", "b")
    ns.queues.delete("q", 0.0)
    assert ns.topics.binding_count == 0
    ns.queues.declare("r", QueueOptions(), 0.0)
    ns.topics.bind("r", "a")
    ns.topics.bind("r", "b")


async def test_a_consumer_group_past_the_namespace_limit_cannot_commit() -> None:
    async with (
        minibroker.open_broker(config=config(max_groups_per_namespace=2)) as broker,
        broker.connect() as client,
    ):
        await client.create_log("a")
        await client.create_log("b")
        await client.append_many("a", [b"x", b"y"])
        await client.append("b", b"x")
        await client.commit("a", "g1", 1)
        await client.commit("b", "g1", 1)  # the same group on another log
        await client.commit("a", "g2", 1)
        await client.commit("a", "g2", 2)  # a group moving on is no new group
        with pytest.raises(LimitExceeded, match=r"cannot commit for group 'g3'"):
            await client.commit("b", "g3", 0)
        assert await client.committed("b", "g3") is None


def test_a_group_forgotten_or_a_log_deleted_gives_room_back() -> None:
    broker = core(max_groups_per_namespace=1)
    logs = broker.namespace("").logs
    logs.create("a", LogOptions(), 0.0)
    logs.create("b", LogOptions(), 0.0)
    logs.commit("a", "g1", 0, 0.0)
    logs.commit("b", "g1", 0, 0.0)
    with pytest.raises(LimitExceeded):
        logs.commit("a", "g2", 0, 0.0)
    assert logs.forget_group("a", "g1", 0.0)
    with pytest.raises(LimitExceeded):  # still committed on "b"
        logs.commit("a", "g2", 0, 0.0)
    logs.delete("b", 0.0)
    logs.commit("a", "g2", 0, 0.0)
    assert logs.group_count == 1


async def test_a_namespace_past_the_broker_limit_is_refused_at_hello() -> None:
    async with minibroker.open_broker(listen=True, config=config(max_namespaces=2)) as broker:
        async with (
            minibroker.connect(broker.url, namespace="one") as one,
            minibroker.connect(broker.url, namespace="two") as _,
        ):
            await one.declare_queue("kept")
            with pytest.raises(LimitExceeded, match=r"cannot create namespace 'three'"):
                async with minibroker.connect(broker.url, namespace="three"):
                    pass
        # "two" is now empty and unused: it is forgotten to make room; "one" holds a queue.
        async with minibroker.connect(broker.url, namespace="three") as three:
            await three.declare_queue("q")
        assert set(broker.core.namespaces) == {"one", "three"}


def test_idle_namespaces_make_room_but_used_ones_do_not() -> None:
    broker = core(max_namespaces=2)
    broker.namespace("full").queues.declare("q", QueueOptions(), 0.0)
    broker.namespace("empty")
    broker.namespace("new").queues.declare("q", QueueOptions(), 0.0)  # forgets "empty"
    assert set(broker.namespaces) == {"full", "new"}
    with pytest.raises(LimitExceeded, match=r"namespace limit \(2\) is reached"):
        broker.namespace("another")
    assert set(broker.namespaces) == {"full", "new"}


async def test_a_data_directory_above_lowered_limits_still_starts(tmp_path: Path) -> None:
    async with (
        minibroker.open_broker(data_dir=tmp_path, listen=True) as broker,
    ):
        for namespace in ("n1", "n2", "n3"):
            async with minibroker.connect(broker.url, namespace=namespace) as client:
                for name in ("q1", "q2", "q3"):
                    await client.declare_queue(name, durable=True)
                    await client.bind(name, "t." + name)
                for name in ("l1", "l2", "l3"):
                    await client.create_log(name)
                    await client.commit(name, "g-" + name, 0)
    lowered = config(
        max_queues_per_namespace=2,
        max_logs_per_namespace=2,
        max_bindings_per_namespace=2,
        max_groups_per_namespace=2,
        max_namespaces=2,
        max_queues_total=2,
        max_logs_total=2,
    )
    async with minibroker.open_broker(data_dir=tmp_path, listen=True, config=lowered) as broker:
        assert sorted(broker.core.namespaces) == ["n1", "n2", "n3"]
        assert (broker.core.queue_total, broker.core.log_total) == (9, 9)  # all recovered
        async with minibroker.connect(broker.url, namespace="n1") as client:
            assert [q.queue for q in await client.list_queues()] == ["q1", "q2", "q3"]
            assert await client.declare_queue("q1", durable=True) is False
            with pytest.raises(LimitExceeded):
                await client.declare_queue("q4", durable=True)
            with pytest.raises(LimitExceeded):
                await client.bind("q1", "t.other")
            with pytest.raises(LimitExceeded):
                await client.create_log("l4")
            with pytest.raises(LimitExceeded):
                await client.commit("l1", "another", 0)
            await client.commit("l1", "g-l1", 0)  # existing groups go on committing
        with pytest.raises(LimitExceeded):
            async with minibroker.connect(broker.url, namespace="n4"):
                pass
