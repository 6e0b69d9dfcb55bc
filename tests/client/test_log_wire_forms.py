"""Log reads in both wire forms (``read.batches``), against new and older brokers and clients.

The Python clients always ask ``read`` and ``tail`` for ``batches`` and read
whatever comes: a new broker sends each append's batch of entries as stored
(header and body), decoded with one unpack; an older broker ignores the field
and sends frames, which the same decoder reads. A client that does not ask
(an older one, or another language's) gets frames only, as before. The
"older" broker is the in-process one, announcing no ``read.batches`` and
reading frames for everyone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from minibroker.client.protocol import Call
from minibroker.embedded import open_broker
from minibroker.protocol import frames
from minibroker.record_format import BATCH_MAGIC, decode_records, decode_stored
from minibroker.storage import MemoryLog
from minibroker.storage.memory import MemorySegment

RECORDS = [b"a", (b"b", b"key"), {"body": b"c", "headers": {"h": "v"}}, b"d"]
EXPECTED = [(0, None, None, b"a"), (1, b"key", None, b"b"), (2, None, {"h": "v"}, b"c")]
EXPECTED += [(3, None, None, b"d")]


@contextmanager
def older_broker() -> Iterator[None]:
    """The broker announces no ``read.batches`` and sends frames whatever is asked."""
    with (
        mock.patch.object(frames, "EXTENSIONS", ("put.bare", "fetch.compact")),
        mock.patch.object(MemoryLog, "read_stored", lambda log, o, n, b, _=0: log.read(o, n, b)),
    ):
        yield


def fields(records: list[Any]) -> list[tuple[Any, ...]]:
    return [(r.offset, r.key, r.headers, r.body) for r in records]


async def write(mb: Any) -> None:
    await mb.create_log("ev")
    assert await mb.append_many("ev", RECORDS[:3]) == 0
    assert await mb.append_many("ev", RECORDS[3:]) == 3


async def read_and_tail(mb: Any) -> None:
    assert fields(await mb.read("ev", start=0)) == EXPECTED
    assert fields(await mb.read("ev", start=1, max_records=2)) == EXPECTED[1:3]
    async with mb.tail("ev", start=0) as tail:
        assert fields(await tail.get_batch(10)) == EXPECTED


async def raw_read(mb: Any, **options: Any) -> bytes:
    result = await mb._call(Call("read", {"log": "ev", "start": 0, **options}))
    data: bytes = result["records"]
    return data


async def test_a_new_broker_sends_batches_to_a_client_that_asks() -> None:
    async with open_broker() as broker, broker.connect() as mb:
        assert "read.batches" in mb._conn.protocol.extensions
        await write(mb)
        await read_and_tail(mb)
        data = await raw_read(mb, batches=True)
        assert data[0] == BATCH_MAGIC  # the first append's batch, as stored
        assert fields(decode_stored(data)) == EXPECTED


async def test_a_client_that_does_not_ask_gets_frames() -> None:
    async with open_broker() as broker, broker.connect() as mb:
        await write(mb)
        data = await raw_read(mb)  # what an older client sends: no "batches"
        assert fields(decode_records(data)) == EXPECTED  # frames only, every CRC checked
        assert data == await raw_read(mb, batches=False)


async def test_a_new_client_reads_an_older_brokers_frames() -> None:
    with older_broker():
        async with open_broker() as broker, broker.connect() as mb:
            assert "read.batches" not in mb._conn.protocol.extensions
            await write(mb)
            await read_and_tail(mb)
            data = await raw_read(mb, batches=True)
            assert fields(decode_records(data)) == EXPECTED


async def test_a_tail_sends_batches_as_stored_never_framed() -> None:
    """Replaying appends through a tail frames no record in the broker."""
    async with open_broker() as broker, broker.connect() as mb:
        await mb.create_log("big")
        await mb.append_many("big", [b"x" * 100] * 50)
        framed = mock.patch(
            "minibroker.storage.batch.frames_of", side_effect=AssertionError("framed")
        )
        with framed, mock.patch.object(MemorySegment, "_frames", side_effect=AssertionError):
            async with mb.tail("big", start=0, max_bytes=1 << 20) as tail:
                assert len(await tail.get_batch(50)) == 50
