"""Blocking and asyncio code under test: a real TCP broker in a background thread.

``minibroker_server`` is one broker for the whole test session (started on a
free port, ready when the fixture returns); ``minibroker_url`` is its URL
with a fresh namespace for each test, so tests never see each other's
queues, topics or logs. These tests are plain functions: no Trio needed.
"""

from __future__ import annotations

import asyncio

import pytest

import minibroker
from minibroker.core.config import Limits
from minibroker.testing import ThreadedBroker, run_in_thread


# --- snippet: blocking
def test_blocking_code(minibroker_url: str) -> None:
    with minibroker.connect_sync(minibroker_url) as mb:
        mb.declare_queue("emails")
        mb.put_many("emails", [b"welcome alice", b"welcome bob"])
        batch = mb.fetch("emails", max_messages=10)
        assert [d.body for d in batch] == [b"welcome alice", b"welcome bob"]
        assert mb.ack(batch) == 2
# --- end


# --- snippet: namespaces
@pytest.mark.parametrize("visibility_timeout", [10, 20])
def test_names_never_collide(minibroker_url: str, visibility_timeout: int) -> None:
    # Both runs declare "emails" with other options: no Conflict, since each
    # test has its own namespace on the shared broker.
    with minibroker.connect_sync(minibroker_url) as mb:
        assert mb.declare_queue("emails", visibility_timeout=visibility_timeout)
        assert [q.queue for q in mb.list_queues()] == ["emails"]
# --- end


# --- snippet: asyncio
def test_asyncio_code(minibroker_url: str) -> None:
    async def main() -> list[int]:
        async with minibroker.aio.connect(minibroker_url) as mb:
            await mb.create_log("audit")
            await mb.append_many("audit", [b"login", b"logout"])
            return [r.offset for r in await mb.read("audit", start="earliest")]

    assert asyncio.run(main()) == [0, 1]
# --- end


# --- snippet: advance
def test_visibility_timeout_without_waiting(
    minibroker_server: ThreadedBroker, minibroker_url: str
) -> None:
    with minibroker.connect_sync(minibroker_url) as mb:
        mb.declare_queue("jobs", visibility_timeout=30)
        mb.put("jobs", b"job")
        assert len(mb.fetch("jobs")) == 1  # fetched, never acked

        minibroker_server.advance(31)  # the broker's clock jumps; due timers fire
        [again] = mb.fetch("jobs")
        assert again.delivery_count == 2
        again.ack()
# --- end


# --- snippet: own server
def test_a_broker_of_its_own() -> None:
    with (
        run_in_thread(limits=Limits(max_message_bytes=1024)) as broker,
        minibroker.connect_sync(broker.url) as mb,
    ):
        mb.declare_queue("small")
        with pytest.raises(minibroker.TooLarge):
            mb.put("small", b"x" * 2048)
# --- end
