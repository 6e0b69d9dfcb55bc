"""The pipelined producers (``mb.queue_producer``, ``mb.log_producer``) in every flavour.

What client/producer.py promises: messages are stored in the order they
were put, each confirmation carries its own message's result or its batch's
error, at most ``max_in_flight`` batches await confirmation, ``flush``
raises a failure once, leaving the block flushes. The async scenarios run
on the in-process Trio client and on the asyncio client over TCP; the
blocking client has its own copies (its API has no ``await``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import minibroker
import minibroker.aio
from minibroker.client.bodies import _encode_message, encode_messages
from minibroker.client.producer import encoded_size
from minibroker.errors import ConnectionClosed, Overflow, TooLarge

COUNT = 1000


async def _fetch_all(mb: Any, queue: str, count: int) -> list[bytes]:
    bodies: list[bytes] = []
    while len(bodies) < count:
        batch = await mb.fetch(queue, count)
        assert batch, f"only {len(bodies)} of {count} messages arrived"
        bodies += [d.body for d in batch]
    return bodies


async def queue_order_and_window(mb: Any) -> None:
    await mb.declare_queue("jobs")
    async with mb.queue_producer("jobs", max_batch=50, max_in_flight=3) as producer:
        confirmations = []
        for i in range(COUNT):
            confirmations.append(await producer.put(b"%d" % i, {"n": str(i)} if i % 7 else None))
            assert producer.in_flight <= 3
    assert all(c.done for c in confirmations)  # leaving the block flushed
    assert [await c for c in confirmations[:3]] == [None, None, None]
    assert await _fetch_all(mb, "jobs", COUNT) == [b"%d" % i for i in range(COUNT)]


async def log_offsets(mb: Any) -> None:
    await mb.create_log("events")
    async with mb.log_producer("events", max_batch=64, max_in_flight=2) as producer:
        confirmations = [await producer.append(b"r%d" % i, key=b"k") for i in range(500)]
        assert await confirmations[-1] == 499  # waiting for one sends what it waits for
    assert [await c for c in confirmations] == list(range(500))
    records = await mb.read("events", max_records=1000)
    assert [(r.offset, r.key, r.body) for r in records] == [
        (i, b"k", b"r%d" % i) for i in range(500)
    ]


async def errors_per_message(mb: Any) -> None:
    await mb.declare_queue("small", max_length=5)
    producer = mb.queue_producer("small", max_batch=5)
    confirmations = [await producer.put(b"%d" % i) for i in range(10)]
    with pytest.raises(Overflow):
        await producer.flush()
    await producer.flush()  # a failure is raised by one flush only
    stored: list[bytes] = []
    for i, confirmation in enumerate(confirmations):
        try:
            await confirmation
        except Overflow:
            continue
        stored.append(b"%d" % i)
    assert 0 < len(stored) <= 5
    assert [d.body for d in await mb.fetch("small", 10)] == stored  # in order, no gaps filled
    with pytest.raises(TypeError):
        await producer.put("text")  # type: ignore[arg-type]
    await producer.aclose()
    with pytest.raises(RuntimeError):
        await producer.put(b"late")


async def reader_sends_the_next_batch(mb: Any) -> None:
    await mb.declare_queue("q")
    async with mb.queue_producer("q", max_batch=100) as producer:
        first = await producer.put(b"first")  # nothing in flight: sent at once
        second = await producer.put(b"second")  # collects behind the first
        assert not second.done
        await first
        # The client's reader sent the collected batch as the first was confirmed.
        assert not producer._state.collecting.items
        await second
    assert await _fetch_all(mb, "q", 2) == [b"first", b"second"]


async def groups_keep_order_with_single_messages(mb: Any) -> None:
    await mb.declare_queue("mixed")
    await mb.create_log("mixed")
    async with (
        mb.queue_producer("mixed", max_batch=10, max_in_flight=2) as queue_producer,
        mb.log_producer("mixed", max_batch=10, max_in_flight=2) as log_producer,
    ):
        single = await queue_producer.put(b"0")
        group = await queue_producer.put_many([b"%d" % i for i in range(1, 8)])
        more = await queue_producer.put_many([(b"%d" % i, {"i": str(i)}) for i in range(8, 20)])
        first = await log_producer.append(b"r0")
        records = await log_producer.append_many([b"r%d" % i for i in range(1, 30)])
    assert (await single, await group, await more) == (None, 7, 12)
    assert (await first, await records) == (0, 1)
    assert await _fetch_all(mb, "mixed", 20) == [b"%d" % i for i in range(20)]
    assert [r.body for r in await mb.read("mixed")] == [b"r%d" % i for i in range(30)]


ASYNC_SCENARIOS = [
    queue_order_and_window,
    log_offsets,
    errors_per_message,
    reader_sends_the_next_batch,
    groups_keep_order_with_single_messages,
]


@pytest.mark.parametrize("scenario", ASYNC_SCENARIOS)
async def test_in_process_trio_client(scenario: Callable[[Any], Awaitable[None]]) -> None:
    async with minibroker.open_broker() as broker, broker.connect() as mb:
        await scenario(mb)


@pytest.mark.parametrize("scenario", ASYNC_SCENARIOS)
def test_asyncio_client(scenario: Callable[[Any], Awaitable[None]], minibroker_url: str) -> None:
    async def run() -> None:
        async with minibroker.aio.connect(minibroker_url) as mb:
            await scenario(mb)

    asyncio.run(run())


async def test_a_lost_connection_fails_the_confirmations_and_refuses_more() -> None:
    async with minibroker.open_broker() as broker:
        async with broker.connect() as mb:
            await mb.declare_queue("q")
            producer = mb.queue_producer("q")
            await producer.put(b"a")
            waiting = await producer.put(b"b")
        with pytest.raises(ConnectionClosed):
            await waiting
        with pytest.raises(ConnectionClosed):
            await producer.put(b"c")


# ------------------------------------------------------------ blocking client


def test_blocking_queue_producer_keeps_order_and_window(minibroker_url: str) -> None:
    with minibroker.connect_sync(minibroker_url) as mb:
        mb.declare_queue("jobs")
        with mb.queue_producer("jobs", max_batch=50, max_in_flight=3) as producer:
            confirmations = []
            for i in range(COUNT):
                confirmations.append(producer.put(b"%d" % i))
                assert producer.in_flight <= 3
        assert all(c.done for c in confirmations)
        assert confirmations[0].result() is None
        bodies: list[bytes] = []
        while len(bodies) < COUNT:
            bodies += [d.body for d in mb.fetch("jobs", COUNT)]
        assert bodies == [b"%d" % i for i in range(COUNT)]


def test_blocking_log_producer_confirms_offsets(minibroker_url: str) -> None:
    with minibroker.connect_sync(minibroker_url) as mb:
        mb.create_log("events")
        with mb.log_producer("events", max_batch=64, max_in_flight=2) as producer:
            confirmations = [producer.append(b"r%d" % i) for i in range(500)]
            assert confirmations[-1].result() == 499
        assert [c.result() for c in confirmations] == list(range(500))
        assert [r.body for r in mb.read("events", max_records=1000)] == [
            b"r%d" % i for i in range(500)
        ]


def test_blocking_producer_errors_per_message(minibroker_url: str) -> None:
    with minibroker.connect_sync(minibroker_url) as mb:
        mb.declare_queue("small", max_length=5)
        producer = mb.queue_producer("small", max_batch=5)
        confirmations = [producer.put(b"%d" % i) for i in range(10)]
        with pytest.raises(Overflow):
            producer.flush()
        producer.flush()
        stored: list[bytes] = []
        for i, confirmation in enumerate(confirmations):
            try:
                confirmation.result()
            except Overflow:
                continue
            stored.append(b"%d" % i)
        assert 0 < len(stored) <= 5
        assert [d.body for d in mb.fetch("small", 10)] == stored
        producer.close()
        with pytest.raises(RuntimeError):
            producer.put(b"late")


def test_producer_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        minibroker.client.producer.ProducerState(
            None, list, lambda r, i: None, max_batch=1, max_batch_bytes=1, max_in_flight=0
        )


async def test_a_message_above_the_frame_limit_fails_alone() -> None:
    async with minibroker.open_broker() as broker, broker.connect() as mb:
        await mb.declare_queue("q")
        limit = mb.server_info["limits"]["max_frame_bytes"]
        async with mb.queue_producer("q") as producer:
            await producer.put(b"first")  # sent at once: the next ones collect behind it
            before = await producer.put(b"small")
            huge = await producer.put(b"x" * (limit + 1))
            after = await producer.put(b"after")
            with pytest.raises(TooLarge):
                await huge
            with pytest.raises(TooLarge):
                await producer.flush()
        assert await before is None and await after is None
        assert await _fetch_all(mb, "q", 3) == [b"first", b"small", b"after"]




def test_blocking_producer_groups(minibroker_url: str) -> None:
    with minibroker.connect_sync(minibroker_url) as mb:
        mb.create_log("events")
        with mb.log_producer("events", max_batch=100) as producer:
            groups = [producer.append_many([b"%d" % i] * 50) for i in range(10)]
        assert [g.result() for g in groups] == list(range(0, 500, 50))
        with pytest.raises(TypeError):
            producer.append_many(b"one body")


@given(
    st.lists(
        st.binary(max_size=8)
        | st.fixed_dictionaries({"body": st.binary(max_size=8)})
        | st.fixed_dictionaries({"body": st.binary(max_size=8), "headers": st.just({"k": "v"})}),
        max_size=6,
    )
)
def test_encoded_size_is_the_body_bytes_of_any_batch(encoded: list[Any]) -> None:
    """The one-pass size of bare bodies (``b"".join``) equals the general sum,
    and a batch with maps takes the general way."""
    expected = sum(len(m) if type(m) is bytes else len(m["body"]) for m in encoded)
    assert encoded_size(encoded) == expected


@given(
    st.lists(
        st.binary(max_size=4)
        | st.binary(max_size=4).map(bytearray)
        | st.tuples(st.binary(max_size=4), st.just({"k": "v"})),
        max_size=5,
    )
)
def test_bare_batches_of_bodies_go_as_they_are_and_others_message_by_message(
    items: list[Any],
) -> None:
    """``encode_messages(bare=True)``: a batch of plain ``bytes`` is sent as it
    is (the fast path); the general way gives the same list for it, and
    copies a ``bytearray`` to ``bytes``."""
    general = [m if "headers" in m else m["body"] for m in map(_encode_message, items)]
    encoded = encode_messages(items, "put_many", bare=True)
    assert encoded == general
    assert all(type(m) in (bytes, dict) for m in encoded)
