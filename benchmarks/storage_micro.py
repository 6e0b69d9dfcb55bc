"""Micro-benchmark of minibroker.storage: encode, append, read, decode, recovery.

Not a test (nothing is asserted about speed); run it by hand::

    python -m benchmarks.storage_micro                 # 1M records of 100 bytes
    python -m benchmarks.storage_micro --records 200000 --body 1000 --batch 100

Prints one line per measurement: records/s and MB/s of frame bytes.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable

from minibroker.log_store import LogStore
from minibroker.record_format import decode_fields, decode_records, encode_records
from minibroker.storage import MemoryLog, SegmentedLog


def line(name: str, value: str) -> None:
    print(f"{name:<46} {value}")


class Timer:
    """Wall-clock and CPU seconds of a block: on a busy machine, CPU time is the steadier one."""

    def __enter__(self) -> Timer:
        self.wall = -time.perf_counter()
        self.cpu = -time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter()
        self.cpu += time.process_time()


def report(name: str, records: int, nbytes: int, timer: Timer) -> None:
    def rates(seconds: float) -> str:
        return f"{records / seconds / 1e6:6.2f} M rec/s {nbytes / seconds / 1e6:7.1f} MB/s"

    line(name, f"{rates(timer.wall)}  | CPU time: {rates(timer.cpu)}")


def fill(store: LogStore, records: int, body: bytes, batch: int, sync: bool) -> Timer:
    entries = [(None, None, body)] * batch
    with Timer() as timer:
        for i in range(records // batch):
            store.append(entries, 1_700_000_000_000 + i)
            if sync:
                store.sync()
    return timer


def read_all(store: LogStore, max_records: int, max_bytes: int) -> tuple[int, int, Timer]:
    offset, count, nbytes = store.first_offset, 0, 0
    with Timer() as timer:
        while offset < store.next_offset:
            batch = store.read(offset, max_records, max_bytes)
            offset = batch.next_offset
            count += batch.count
            nbytes += len(batch.data)
    return count, nbytes, timer


def per_call(name: str, calls: int, action: Callable[[int], object]) -> None:
    with Timer() as timer:
        for i in range(calls):
            action(i)
    line(
        name,
        f"{timer.wall / calls * 1e6:7.1f} us/call  | CPU time: {timer.cpu / calls * 1e6:.1f} us",
    )


def random_offsets(store: LogStore, count: int) -> list[int]:
    rng = random.Random(1)
    return [rng.randrange(store.first_offset, store.next_offset) for _ in range(count)]


def resident_bytes() -> int:
    """This process's resident set size (Linux), to see what the memory store holds."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--body", type=int, default=100, help="body bytes per record")
    parser.add_argument("--batch", type=int, default=1000, help="records per append")
    parser.add_argument("--dir", default=None, help="where to put the disk log (default: temp)")
    args = parser.parse_args()
    body = os.urandom(args.body)
    batches = args.records // args.batch
    records = batches * args.batch
    print(f"{records} records of {args.body} bytes, {args.batch} per append\n")

    # Encoding alone: the per-record CPU cost every append pays.
    entries = [(None, None, body)] * args.batch
    frame_bytes = 0
    with Timer() as timer:
        for i in range(batches):
            frame_bytes += len(encode_records(i * args.batch, 1_700_000_000_000, entries))
    report("encode_records", records, frame_bytes, timer)

    # Memory store.
    rss_before = resident_bytes()
    memory = MemoryLog()
    report("MemoryLog.append", records, frame_bytes, fill(memory, records, body, args.batch, False))
    held = resident_bytes() - rss_before
    line("MemoryLog resident memory", f"{held / records:7.1f} bytes/record ({held / 1e6:.1f} MB)")
    count, nbytes, timer = read_all(memory, 1000, 1 << 20)
    report("MemoryLog.read (1000 rec / 1 MiB)", count, nbytes, timer)
    offsets = random_offsets(memory, 20_000)
    per_call(
        "MemoryLog.read 1 record at a random offset",
        len(offsets),
        lambda i: memory.read(offsets[i], 1, 1 << 20),
    )
    memory.destroy()

    # Disk store.
    root = args.dir or tempfile.mkdtemp(prefix="storage-micro-")
    try:
        directory = ""
        for sync in (False, True):
            directory = os.path.join(root, f"log-sync-{sync}")
            disk = SegmentedLog.open(directory)
            kb = frame_bytes / batches / 1024
            label = f"fsync every append ({kb:.0f} KB)" if sync else "no fsync"
            report(
                f"SegmentedLog.append, {label}",
                records,
                frame_bytes,
                fill(disk, records, body, args.batch, sync),
            )
            disk.close()
        disk = SegmentedLog.open(directory)
        sizes = {
            name: os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory)
        }
        on_disk = sum(sizes.values())
        index_bytes = sum(size for name, size in sizes.items() if name.endswith(".index"))
        line(
            "SegmentedLog disk usage",
            f"{on_disk / records:7.1f} bytes/record ({on_disk / 1e6:.1f} MB in "
            f"{disk.segment_count} segments, of which index files {index_bytes} bytes)",
        )
        count, nbytes, timer = read_all(disk, 1000, 1 << 20)
        report("SegmentedLog.read (1000 rec / 1 MiB)", count, nbytes, timer)
        count, nbytes, timer = read_all(disk, 100_000, 8 << 20)
        report("SegmentedLog.read (8 MiB)", count, nbytes, timer)
        offsets = random_offsets(disk, 20_000)
        per_call(
            "SegmentedLog.read 1 record at a random offset",
            len(offsets),
            lambda i: disk.read(offsets[i], 1, 1 << 20),
        )
        stamps = [1_700_000_000_000 + o // args.batch for o in random_offsets(disk, 2_000)]
        per_call(
            "SegmentedLog.offset_for_timestamp",
            len(stamps),
            lambda i: disk.offset_for_timestamp(stamps[i]),
        )
        data = disk.read(0, 100_000, 1 << 30).data
        count = len(decode_fields(data))
        with Timer() as timer:
            decode_records(data)
        report("decode_records (Record objects)", count, len(data), timer)
        with Timer() as timer:
            decode_fields(data)
        report("decode_fields (plain tuples)", count, len(data), timer)
        disk.close()
        newest = max(name for name in sizes if name.endswith(".log"))
        with Timer() as timer:
            SegmentedLog.open(directory).close()
        line(
            "SegmentedLog.open (rescans the newest segment)",
            f"{timer.wall:7.3f} s for {sizes[newest] / 1e6:.1f} MB "
            f"({sizes[newest] / timer.cpu / 1e6:.0f} MB/s CPU time)",
        )
    finally:
        if args.dir is None:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
