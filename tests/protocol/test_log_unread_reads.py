"""A client that parks log reads and stops reading cannot make the broker hold
a copy of the records per parked read (docs/logs.md, "A reader that stops
reading").

The connection stops reading a client past its high-water mark, but the reads
it already parked (with ``wait``) are answered when records are appended.
Before the bound, each one read and encoded its own copy of the records into
the session's output whether or not the client read: 300 parked reads and one
1 MiB append held 300 MiB. Now a parked read woken while its session holds
more than ``max_reply_backlog`` unsent bytes is answered as at its deadline:
an empty batch at its offset, from which the client reads again.
"""

from __future__ import annotations

from typing import Any

from helpers import Client, Net

from minibroker.protocol.codec import pack_frame
from minibroker.protocol.session import SessionSettings
from minibroker.storage import decode_records

RECORD = 100 * 1024
BACKLOG = 256 * 1024
PARKED = 20


def _park_reads(client: Client, net: Net, count: int, offset: int = 0) -> list[int]:
    """Send ``count`` waiting reads at ``offset`` without reading anything back."""
    ids = []
    for _ in range(count):
        request_id = client.next_id()
        frame = {"op": "read", "id": request_id, "log": "ev", "start": offset, "wait": 30.0}
        client.session.receive_data(pack_frame(frame), net.now)
        ids.append(request_id)
    return ids


def _bodies(result: dict[str, Any]) -> list[bytes]:
    return [record.body for record in decode_records(result["records"])]


def test_parked_reads_of_a_client_that_stopped_reading_answer_empty_past_the_backlog() -> None:
    net = Net()
    settings = SessionSettings(outbound_high_water=64 * 1024, max_reply_backlog=BACKLOG)
    stalled = net.connect(settings=settings)
    reader = net.connect()
    writer = net.connect()
    writer.call("log.create", log="ev")
    parked = _park_reads(stalled, net, PARKED)
    normal = reader.send("read", log="ev", start=0, wait=30.0)
    assert stalled.session.outbound_bytes == 0
    body = b"r" * RECORD
    writer.call("append", log="ev", records=[{"body": body}])
    # What the broker holds for the stalled client: the backlog, the answer
    # that passed it, and small empty answers; not a copy per parked read.
    held = stalled.session.outbound_bytes
    assert held <= BACKLOG + RECORD + PARKED * 100
    # The reader that reads is served as before.
    assert _bodies(reader.result(normal)) == [body]
    assert net.broker.namespace("").logs.statistics("ev").waiting_reads == 0
    # Reading again, the stalled client finds records, then empty batches at
    # the same offset: never the other way round.
    answers = [stalled.result(request_id) for request_id in parked]
    full = [answer["count"] for answer in answers].count(1)
    assert 0 < full < PARKED
    assert BACKLOG <= full * RECORD <= BACKLOG + 2 * RECORD
    for answer in answers[:full]:
        assert _bodies(answer) == [body]
        assert answer["next_offset"] == 1
    for answer in answers[full:]:
        assert answer == {"records": b"", "count": 0, "next_offset": 0}
        # Read again from its offset, each such read gets every record.
        assert _bodies(stalled.call("read", log="ev", start=answer["next_offset"])) == [body]
    assert stalled.session.outbound_bytes == 0


def test_a_client_reading_normally_is_fed_past_a_backlog_below_its_high_water() -> None:
    """The backlog is never below the high-water mark: a client reading normally
    gets records in every parked read, however low ``max_reply_backlog`` is set."""
    net = Net()
    settings = SessionSettings(outbound_high_water=BACKLOG, max_reply_backlog=1)
    client = net.connect(settings=settings)
    writer = net.connect()
    writer.call("log.create", log="ev")
    parked = _park_reads(client, net, 2)
    writer.call("append", log="ev", records=[{"body": b"x" * 1024}])
    for request_id in parked:
        assert _bodies(client.result(request_id)) == [b"x" * 1024]


def test_the_deadline_still_answers_empty_and_nothing_is_left_parked() -> None:
    net = Net()
    settings = SessionSettings(outbound_high_water=1024, max_reply_backlog=1024)
    stalled = net.connect(settings=settings)
    writer = net.connect()
    writer.call("log.create", log="ev")
    first, second = _park_reads(stalled, net, 2)
    writer.call("append", log="ev", records=[{"body": b"y" * 2048}])
    assert stalled.result(first)["count"] == 1
    assert stalled.result(second) == {"records": b"", "count": 0, "next_offset": 0}
    assert net.advance(60.0) == 0  # their deadline timers went with them
