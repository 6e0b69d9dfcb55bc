"""Batches of entries (kind 2): how every append is stored since issue 19.

The records of an append are stored as the client sent them, one msgpack
array behind one CRC (``minibroker/record_format.py::encode_entries``). Every
reader must see exactly what the format before gave (a frame per record,
``encode_batch``): readers of frames get those very bytes, made on the way,
and a client that takes batches (``read_stored``, the ``read.batches``
extension) gets the same records within the same limits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibroker.log_store import Entry, LogStore
from minibroker.record_format import (
    BATCH_HEADER_SIZE,
    CorruptRecord,
    decode_records,
    decode_records_fast,
    decode_stored,
    encode_batch,
    encode_entries,
    encode_records,
    entries_facts,
    entries_records,
    entries_to_frames,
)
from minibroker.storage import MemoryLog, SegmentedLog
from minibroker.storage import batch as batch_module
from minibroker.storage.batch import KIND_ENTRIES, parse_batch_header, scan_batches

headers = st.none() | st.dictionaries(st.text(max_size=3), st.text(max_size=5), max_size=3)
entry: st.SearchStrategy[Entry] = st.binary(max_size=40) | st.tuples(
    st.none() | st.binary(max_size=6), headers, st.binary(max_size=40)
)
batches = st.lists(st.lists(entry, min_size=1, max_size=8), min_size=1, max_size=6)

MakeLog = Callable[..., LogStore]
#: The logs are made per example by the fixture's factory: the fixture itself holds none.
PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(params=["memory", "disk"])
def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLog]:
    made: list[LogStore] = []

    def make(**options: int) -> LogStore:
        if request.param == "memory":
            log: LogStore = MemoryLog(**options)
        else:
            log = SegmentedLog.open(tmp_path / f"log{len(made)}", **options)
        made.append(log)
        return log

    yield make
    for log in made:
        log.close()


def old_frames(appended: list[tuple[list[Entry], int]]) -> list[bytes]:
    """The frames the format before issue 19 stored for these appends, one per record."""
    frames = []
    offset = 0
    for entries, timestamp in appended:
        data, sizes = encode_batch(offset, timestamp, entries)
        position = 0
        for size in sizes:
            frames.append(data[position : position + size])
            position += size
        offset += len(entries)
    return frames


@PROPERTY_SETTINGS
@given(appends=batches, data=st.data())
def test_readers_of_frames_get_the_frames_of_the_old_format(
    make_log: MakeLog, appends: list[list[Entry]], data: st.DataObject
) -> None:
    log = make_log(segment_bytes=400)
    before = make_log(segment_bytes=10**6)  # the format before: a frame per record
    before.entries_format = False  # type: ignore[attr-defined]
    appended = [(entries, 1_000 + i) for i, entries in enumerate(appends)]
    for entries, timestamp in appended:
        log.append(entries, timestamp)
        before.append(entries, timestamp)
    frames = old_frames(appended)
    assert log.read(0, len(frames), 1 << 20).data == b"".join(frames)
    assert list(log.iter_records()) == decode_records(b"".join(frames))
    offset = data.draw(st.integers(0, len(frames)), label="offset")
    max_records = data.draw(st.integers(1, 10), label="max_records")
    max_bytes = data.draw(st.integers(1, 300), label="max_bytes")
    got = log.read(offset, max_records, max_bytes)
    # The limits as for frames (the log of frames is one segment: no segment end stops it).
    assert got == before.read(offset, max_records, max_bytes)


@PROPERTY_SETTINGS
@given(appends=batches, data=st.data())
def test_a_client_taking_batches_gets_the_same_records(
    make_log: MakeLog, appends: list[list[Entry]], data: st.DataObject
) -> None:
    log = make_log(segment_bytes=400)
    appended = [(entries, 1_000 + i) for i, entries in enumerate(appends)]
    for entries, timestamp in appended:
        log.append(entries, timestamp)
    records = decode_records(b"".join(old_frames(appended)))
    offset = data.draw(st.integers(0, len(records)), label="offset")
    max_records = data.draw(st.integers(1, 12), label="max_records")
    max_bytes = data.draw(st.integers(1, 400), label="max_bytes")
    got = log.read_stored(offset, max_records, max_bytes)
    assert decode_stored(got.data) == records[offset : offset + got.count]
    assert got.next_offset == offset + got.count
    assert got.count <= max_records
    if offset < len(records):
        assert got.count >= 1
    # Within max_bytes, or one record, or one batch that starts the answer whole.
    if len(got.data) > max_bytes and got.count > 1:
        header = parse_batch_header(got.data, 0)
        assert header is not None and header[0] == got.count
        assert BATCH_HEADER_SIZE + header[1] == len(got.data)


def test_whole_batches_go_as_stored_and_partial_ones_as_frames(make_log: MakeLog) -> None:
    log = make_log()
    log.append([b"a", b"b", b"c"], 5)
    log.append([b"d", (b"k", {"h": "v"}, b"e")], 6)
    whole = log.read_stored(0, 100, 1 << 20)
    assert whole.count == 5
    assert whole.data[0] == 0xB7 and parse_batch_header(whole.data, 0) == (3, 30, KIND_ENTRIES)
    # From inside a batch: its rest as frames, then the next batch as stored.
    inside = log.read_stored(1, 100, 1 << 20)
    assert inside.data.startswith(encode_records(1, 5, [b"b", b"c"]))
    assert [r.body for r in decode_stored(inside.data)] == [b"b", b"c", b"d", b"e"]
    # Fewer records wanted than the batch holds: frames, exactly as read gives them.
    assert log.read_stored(0, 2, 1 << 20) == log.read(0, 2, 1 << 20)
    # A batch bigger than max_bytes: frames, cut as read cuts them...
    assert log.read_stored(0, 100, 30) == log.read(0, 100, 30)
    # ... unless the tail's own limit lets the first batch go whole.
    assert log.read_stored(0, 100, 30, first_batch_bytes=1 << 20).data.startswith(whole.data[:46])


def test_a_batch_of_entries_is_checked_by_its_crc() -> None:
    batch = encode_entries(7, 9, [b"x", (None, {"a": "b"}, b"y")])
    body = batch.head + batch.entries
    assert entries_facts(body, 0, len(body)) == (7, 9, 2)
    assert [r.offset for r in entries_records(body)] == [7, 8]
    for position in range(len(body)):
        damaged = bytearray(body)
        damaged[position] ^= 0x10
        assert entries_facts(bytes(damaged), 0, len(body)) is None
        with pytest.raises(CorruptRecord):
            entries_records(bytes(damaged))
    assert entries_facts(body[:-1], 0, len(body) - 1) is None  # torn


def test_recovery_takes_a_batch_whole_or_not_at_all() -> None:
    first = encode_entries(0, 5, [b"a", b"b"])
    second = encode_entries(2, 6, [b"c", b"d", b"e"])
    from minibroker.storage.batch import encode_batch_header

    stored = b"".join(
        (
            encode_batch_header(2, first.size, KIND_ENTRIES),
            first.head,
            first.entries,
            encode_batch_header(3, second.size, KIND_ENTRIES),
            second.head,
            second.entries,
        )
    )
    assert scan_batches(stored, 0).record_count == 5
    boundary = BATCH_HEADER_SIZE + first.size
    for cut in range(len(stored)):
        scan = scan_batches(stored[:cut], 0)
        assert scan.record_count == (2 if cut >= boundary else 0)
        assert scan.valid_bytes == (boundary if cut >= boundary else 0)
    # A batch that does not continue the offsets (or goes back in time) is not taken.
    assert scan_batches(stored, 1).record_count == 0
    late = encode_entries(2, 4, [b"c"])
    older = encode_batch_header(1, late.size, KIND_ENTRIES) + late.head + late.entries
    assert scan_batches(stored[:boundary] + older, 0).record_count == 2


@given(st.lists(st.tuples(st.integers(0, 2**40), st.lists(entry, min_size=1, max_size=5))))
def test_decode_stored_reads_frames_alone_as_decode_records_fast(
    runs: list[tuple[int, list[Entry]]],
) -> None:
    """What an older broker sends (frames only), the new client reads as before."""
    data = b"".join(encode_records(offset, 1, entries) for offset, entries in runs)
    assert decode_stored(data) == decode_records_fast(data)


@given(entries=st.lists(entry, min_size=1, max_size=8), data=st.data())
def test_entries_to_frames_is_encode_batch_cut_like_a_read(
    entries: list[Entry], data: st.DataObject
) -> None:
    batch = encode_entries(100, 3, entries)
    body = batch.head + batch.entries
    skip = data.draw(st.integers(0, len(entries) - 1))
    max_records = data.draw(st.integers(1, 10))
    max_bytes = data.draw(st.integers(0, 400))
    at_least_one = data.draw(st.booleans())
    got = entries_to_frames(body, 100 + skip, max_records, max_bytes, at_least_one)
    expected = encode_batch(100 + skip, 3, entries[skip : skip + max_records])
    keep = 0
    size = 0
    for frame_size in expected.frame_sizes:
        if size + frame_size > max_bytes:
            break
        keep += 1
        size += frame_size
    if not keep and at_least_one:
        keep, size = 1, expected.frame_sizes[0]
    assert got.frame_sizes == expected.frame_sizes[:keep]
    assert got.data == expected.data[:size]


@given(st.binary(max_size=80), st.binary(max_size=80))
def test_decoding_damaged_stored_data_raises_corrupt_record(before: bytes, after: bytes) -> None:
    """Frames or garbage around a batch, cut anywhere: CorruptRecord, never a hang or
    another error (a run of fewer than four bytes once made the decoder spin)."""
    from minibroker.storage.batch import encode_batch_header

    batch = encode_entries(0, 1, [b"x"])
    data = before + encode_batch_header(1, batch.size, KIND_ENTRIES) + batch.head + batch.entries
    for blob in (data + after, (data + after)[:-1], before[:3]):
        with contextlib.suppress(CorruptRecord):
            decode_stored(blob)


@PROPERTY_SETTINGS
@given(appends=batches, data=st.data())
def test_sequential_small_reads_and_reads_after_deletion_give_the_old_frames(
    make_log: MakeLog, appends: list[list[Entry]], data: st.DataObject
) -> None:
    """Reads stepping through batches (which the cache of decoded batches serves) give
    what the old format gave, also after the log's oldest records are deleted and
    when a new log holds other records at the same offsets."""
    with contextlib.ExitStack() as restore:
        _sequential_small_reads(make_log, appends, data, restore)


def _sequential_small_reads(
    make_log: MakeLog,
    appends: list[list[Entry]],
    data: st.DataObject,
    restore: contextlib.ExitStack,
) -> None:
    log = make_log(segment_bytes=400)
    before = make_log(segment_bytes=10**6)
    before.entries_format = False  # type: ignore[attr-defined]
    for i, entries in enumerate(appends):
        log.append(entries, 1_000 + i)
        before.append(entries, 1_000 + i)
    step = data.draw(st.integers(1, 10), label="max_records")
    max_bytes = data.draw(st.integers(1, 300) | st.just(1 << 20), label="max_bytes")
    # Stored units fetched one at a time (the budget's floors at 1) or as usual.
    if data.draw(st.booleans(), label="small fetches"):
        floors = (batch_module.UNITS_MIN_BYTES, batch_module.UNITS_BYTES_PER_RECORD)
        batch_module.UNITS_MIN_BYTES = batch_module.UNITS_BYTES_PER_RECORD = 1
        restore.callback(setattr, batch_module, "UNITS_MIN_BYTES", floors[0])
        restore.callback(setattr, batch_module, "UNITS_BYTES_PER_RECORD", floors[1])

    def read_through(log: LogStore, expected: LogStore, start: int) -> None:
        offset = start
        while offset < log.next_offset:
            got = log.read(offset, step, max_bytes)
            assert got == expected.read(offset, step, max_bytes)
            offset = got.next_offset

    read_through(log, before, 0)
    cut = data.draw(st.integers(0, log.next_offset), label="delete_before")
    log.delete_before(cut)
    read_through(log, before, log.first_offset)
    # Another log, the same offsets and timestamps, other records (the cache is shared).
    other = make_log(segment_bytes=400)
    other_before = make_log(segment_bytes=10**6)
    other_before.entries_format = False  # type: ignore[attr-defined]
    for i, entries in enumerate(appends):
        changed = [b"#" + (e if type(e) is bytes else e[2]) for e in entries]  # type: ignore[operator]
        other.append(changed, 1_000 + i)
        other_before.append(changed, 1_000 + i)
    read_through(other, other_before, 0)
    read_through(log, before, log.first_offset)


@pytest.mark.parametrize(("max_records", "max_bytes"), [(1, 1 << 20), (1000, 40)])
def test_a_batch_is_decoded_once_for_a_reader_stepping_through_it(
    make_log: MakeLog, monkeypatch: pytest.MonkeyPatch, max_records: int, max_bytes: int
) -> None:
    """A reader taking one record at a time pays the batch's CRC and unpack once,
    not once per record (which made such a reader quadratic in the batch size)."""
    import minibroker.record_format as record_format

    decoded: list[int] = []
    real = record_format.decode_entries

    def counting(body: bytes | memoryview) -> tuple[int, int, tuple[Entry, ...]]:
        decoded.append(len(body))
        return real(body)

    monkeypatch.setattr(record_format, "decode_entries", counting)
    # A cache of its own: the shared one may hold these batches from another test.
    monkeypatch.setattr(record_format, "_DECODED", record_format.DecodedBatches())
    log = make_log()
    for i in range(3):
        log.append([b"%d" % n for n in range(50)], 1_000 + i)
    offset = 0
    while offset < log.next_offset:
        got = log.read(offset, max_records, max_bytes)
        assert got.count < 50  # steps smaller than a batch
        offset = got.next_offset
    assert len(decoded) == 3


def test_a_damaged_batch_with_the_head_of_a_cached_one_is_still_checked() -> None:
    """The cache compares the whole body: bytes that differ from the batch it holds
    (damage after it was decoded, say) are checked by their CRC as before."""
    from minibroker.record_format import DecodedBatches

    cache = DecodedBatches()
    batch = encode_entries(5, 9, [b"abc", b"def"])
    body = batch.head + batch.entries
    cache.keep(body, 5, 9, (b"abc", b"def"))
    assert cache.get(bytes(body)) == (5, 9, (b"abc", b"def"))
    damaged = bytearray(body)
    damaged[-1] ^= 0x01
    with pytest.raises(CorruptRecord):
        cache.get(bytes(damaged))


def test_the_cache_of_decoded_batches_is_bounded() -> None:
    from minibroker.record_format import DecodedBatches

    cache = DecodedBatches(max_batches=2, max_bytes=10_000)
    bodies = []
    for i in range(4):
        batch = encode_entries(i * 10, 1, [b"x" * 100] * 10)
        body = batch.head + batch.entries
        bodies.append(body)
        cache.keep(body, i * 10, 1, (b"x" * 100,) * 10)
        assert len(cache) <= 2 and cache.bytes_held <= 10_000
    assert len(cache) == 2
    cache = DecodedBatches(max_batches=8, max_bytes=4_000)
    for i, body in enumerate(bodies):
        cache.keep(body, i * 10, 1, (b"x" * 100,) * 10)
        assert cache.bytes_held <= 4_000
    assert len(cache) == 1  # each costs ~2.5 KB: one fits
    big = encode_entries(0, 1, [b"y" * 4_000])
    cache.keep(big.head + big.entries, 0, 1, (b"y" * 4_000,))
    assert len(cache) == 1 and cache.bytes_held <= 4_000  # over the bound alone: not kept


HEADERS = {
    "bare": [b"x" * (i % 300) for i in range(2000)],
    "keys": [(b"key-%d" % i, None, b"v" * (i % 100)) for i in range(2000)],
    "tracing headers": [
        (None, {"traceparent": f"00-{i:032x}-{i:016x}-01", "type": "json"}, b"x" * 50)
        for i in range(2000)
    ],
    "mixed": [b"x" * 10 if i % 2 else (b"k%d" % i, {"n": f"{i}"}, b"v") for i in range(2000)],
    "many short headers": [
        (b"k", {f"h{j}": f"{i}.{j}" for j in range(50)}, b"") for i in range(300)
    ],
}


@pytest.mark.parametrize("shape", HEADERS)
def test_the_cache_counts_at_least_the_real_memory_of_a_decoded_batch(shape: str) -> None:
    """What a batch costs the cache is never below what its decoded entries and
    kept body really take (tracemalloc): the bound is one of real memory. It
    was 2 bytes per body byte and 100 per entry: 3.6 times below the real
    memory for records with 50 short headers each."""
    import tracemalloc

    from minibroker.record_format import DecodedBatches, decode_entries

    batch = encode_entries(0, 1, HEADERS[shape])
    body = batch.head + batch.entries
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        decoded = decode_entries(body)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    real = after - before + len(body)
    assert DecodedBatches._cost(body, decoded[2]) >= real


def test_a_segment_damaged_after_a_read_is_reported_by_the_next_read(tmp_path: Path) -> None:
    """A batch decoded (and cached) for one read, then damaged on disk: the next read
    in it reads other bytes, which fail their CRC, as without the cache."""
    from minibroker.errors import StorageError

    log = SegmentedLog.open(tmp_path / "log")
    log.append([b"record %d" % n for n in range(20)], 1_000)
    log.sync()
    assert log.read(0, 1, 1 << 20).count == 1
    (segment,) = (tmp_path / "log").glob("*.log")
    raw = bytearray(segment.read_bytes())
    raw[-3] ^= 0x01  # inside the last record's body
    segment.write_bytes(bytes(raw))
    with pytest.raises(StorageError):
        log.read(1, 1, 1 << 20)
    log.close()
