"""A batch is one unit on disk: after any damage it is there whole or not at all.

Every byte of a log holding multi-record batches is cut at and flipped in
turn; recovery must keep exactly the batches that end before the damage,
never the intact first records of a damaged batch. A child process killed
by SIGKILL in the middle of writing a batch leaves none of it behind. And
data directories written before batches existed (format 1: bare frames)
are still read, then continued in the batch format.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibroker.log_store import Entry, Record
from minibroker.record_format import decode_records, encode_entries, encode_records
from minibroker.storage import SegmentedLog
from minibroker.storage.batch import BATCH_HEADER_SIZE, starts_with_batch
from minibroker.storage.commitlog import CLEAN_SHUTDOWN_FILE_NAME

Batch = list[tuple[bytes | None, dict[str, str] | None, bytes]]

entries = st.tuples(
    st.none() | st.binary(max_size=6),
    st.none() | st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    st.binary(max_size=40),
)
batches = st.lists(st.lists(entries, min_size=1, max_size=12), min_size=1, max_size=5)


def write_log(directory: Path, shape: list[Batch]) -> tuple[bytes, list[tuple[int, int]]]:
    """One segment of ``shape``; its bytes and ``(end byte, records so far)`` per batch."""
    log = SegmentedLog.open(directory, segment_bytes=1 << 20)
    ends = []
    for i, batch in enumerate(shape):
        log.append(list(batch), 1_000 + i)
        ends.append((log.size_bytes, log.next_offset))
    log.close()
    return (directory / f"{0:020d}.log").read_bytes(), ends


def recovered_after(directory: Path, content: bytes) -> tuple[list[Record], int]:
    """Records a crashed log holding ``content`` recovers, and where appends continue."""
    for name in os.listdir(directory):
        os.unlink(directory / name)
    (directory / f"{0:020d}.log").write_bytes(content)
    log = SegmentedLog.open(directory, segment_bytes=1 << 20)
    try:
        return list(log.iter_records()), log.next_offset
    finally:
        log.close()


def whole_batches_before(ends: list[tuple[int, int]], position: int) -> int:
    return max((count for end, count in ends if end <= position), default=0)


def expected_records(shape: list[Batch], count: int) -> list[tuple[bytes | None, bytes]]:
    flat = [entry for batch in shape for entry in batch]
    return [(key, body) for key, _, body in flat[:count]]


def check(directory: Path, shape: list[Batch], content: bytes, survivors: int) -> None:
    records, next_offset = recovered_after(directory, content)
    assert [(r.key, r.body) for r in records] == expected_records(shape, survivors)
    assert next_offset == survivors


MULTI = [
    [(None, None, b"first")],
    [(b"k%d" % i, {"i": str(i)} if i % 2 else None, b"m" * i) for i in range(12)],
    [(None, None, b"last-1"), (None, None, b"last-2")],
]


@pytest.mark.slow  # about 2,600 reopens
def test_every_cut_and_every_flip_keeps_whole_batches_only(tmp_path: Path) -> None:
    source = tmp_path / "source"
    content, ends = write_log(source, MULTI)
    assert content.count(bytes([0xB7, 0x02])) >= 3  # three batch headers
    work = tmp_path / "work"
    work.mkdir()
    for position in range(len(content) + 1):
        check(work, MULTI, content[:position], whole_batches_before(ends, position))
    for position in range(len(content)):
        damaged = bytearray(content)
        damaged[position] ^= 0x41
        check(work, MULTI, bytes(damaged), whole_batches_before(ends, position))


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=batches, data=st.data())
def test_any_cut_or_flip_of_any_batches_keeps_whole_batches_only(
    tmp_path_factory: pytest.TempPathFactory, shape: list[Batch], data: st.DataObject
) -> None:
    root = tmp_path_factory.mktemp("atomic")
    content, ends = write_log(root / "source", shape)
    work = root / "work"
    work.mkdir()
    position = data.draw(st.integers(0, len(content)), label="position")
    if data.draw(st.booleans(), label="flip") and position < len(content):
        damaged = bytearray(content)
        damaged[position] ^= data.draw(st.integers(1, 255), label="mask")
        content = bytes(damaged)
    else:
        content = content[:position]
    check(work, shape, content, whole_batches_before(ends, position))


KILLED_MID_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    from minibroker.storage import SegmentedLog, fileio

    log = SegmentedLog.open(sys.argv[1], segment_bytes=1 << 30)
    log.append([b"before-%d" % i for i in range(50)], 1)
    log.sync()
    real_pwrite = fileio.pwrite

    def torn_pwrite(fd, data, position):
        # What a SIGKILL during a large write does: the kernel has copied
        # some pages of the buffer into the file, and the process dies.
        real_pwrite(fd, bytes(data[: len(data) // 2]), position)
        os.kill(os.getpid(), signal.SIGKILL)

    fileio.pwrite = torn_pwrite
    log.append([b"torn-%d" % i for i in range(2000)], 2)
    """
)


def test_a_process_killed_mid_batch_leaves_none_of_it(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    child = subprocess.run(
        [sys.executable, "-c", KILLED_MID_WRITE, str(directory)], capture_output=True, check=False
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    segment = directory / f"{0:020d}.log"
    assert b"torn-1000" in segment.read_bytes()  # half the batch did reach the file
    log = SegmentedLog.open(directory)
    try:
        assert [r.body for r in log.iter_records()] == [b"before-%d" % i for i in range(50)]
        assert log.recovery.bytes_truncated > 0
    finally:
        log.close()


# -- format 1: data directories from before batches --------------------------------


def write_format_1(directory: Path, segments: list[list[Entry]], *, torn: int = 0) -> None:
    """Segment files as the broker wrote them before batches: bare frames, no marker."""
    directory.mkdir()
    offset = 0
    for batch in segments:
        data = encode_records(offset, 1_000 + offset, batch)
        (directory / f"{offset:020d}.log").write_bytes(data)
        offset += len(batch)
    if torn:  # a torn last record in the newest segment
        newest = directory / f"{offset - len(segments[-1]):020d}.log"
        newest.write_bytes(newest.read_bytes()[:-torn])


def test_an_old_format_log_is_read_and_continued_in_the_new_format(tmp_path: Path) -> None:
    directory = tmp_path / "old"
    old = [[b"a%d" % i for i in range(5)], [b"b%d" % i for i in range(7)]]
    write_format_1(directory, old)
    log = SegmentedLog.open(directory, index_interval_bytes=16)
    try:
        assert [r.body for r in log.iter_records()] == old[0] + old[1]
        assert [r.body for r in decode_records(log.read(7, 3, 1 << 20).data)] == old[1][2:5]
        assert log.offset_for_timestamp(1_001) == 5
        # The old newest segment is sealed: appends go to a new, batch-format one.
        assert log.segment_count == 3
        assert log.append([b"new-1", b"new-2"], 2_000) == 12
    finally:
        log.close()
    newest = sorted(directory.glob("*.log"))[-1]
    assert newest.name == f"{12:020d}.log"
    assert starts_with_batch(newest.read_bytes())
    assert not starts_with_batch((directory / f"{5:020d}.log").read_bytes())
    for clean in (True, False):
        if not clean:
            (directory / CLEAN_SHUTDOWN_FILE_NAME).unlink()
        log = SegmentedLog.open(directory, index_interval_bytes=16)
        try:
            bodies = [r.body for r in log.iter_records()]
            assert bodies == old[0] + old[1] + [b"new-1", b"new-2"]
            assert log.segment_count == 3
        finally:
            log.close()


def test_a_torn_old_format_tail_is_cut_record_by_record(tmp_path: Path) -> None:
    directory = tmp_path / "old"
    old = [[b"a%d" % i for i in range(5)], [b"b%d" % i for i in range(7)]]
    write_format_1(directory, old, torn=3)
    log = SegmentedLog.open(directory)
    try:
        # Format 1 has no batches to keep whole: the valid records stay.
        assert [r.body for r in log.iter_records()] == old[0] + old[1][:-1]
        assert log.append([b"next"], 2_000) == 11
        assert log.segment_count == 3
    finally:
        log.close()


def test_a_batch_costs_one_header(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path)
    try:
        batch = [b"x" * 10, b"y" * 20]
        log.append(batch, 1)
        assert log.size_bytes == BATCH_HEADER_SIZE + encode_entries(0, 1, batch).size
        # Reads give the frames alone, exactly as encode_records makes them (from the
        # batch of entries): headers never leave storage for a reader of frames.
        assert log.read(0, 10, 1 << 20).data == encode_records(0, 1, batch)
    finally:
        log.close()
