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
import tracemalloc
from collections.abc import Callable

from minibroker.storage import MemoryLog, SegmentedLog
from minibroker.storage.record import decode_records, encode_records
from minibroker.storage.store import LogStore


def line(name: str, value: str) -> None:
    print(f"{name:<44} {value}")


def report(name: str, records: int, nbytes: int, seconds: float) -> None:
    print(
        f"{name:<44} {records / seconds / 1e6:7.2f} M rec/s {nbytes / seconds / 1e6:9.1f} MB/s"
        f"   ({records} records in {seconds:.3f} s)"
    )


def fill(store: LogStore, records: int, body: bytes, batch: int, sync: bool) -> float:
    entries = [(None, None, body)] * batch
    start = time.perf_counter()
    for i in range(records // batch):
        store.append(entries, 1_700_000_000_000 + i)
        if sync:
            store.sync()
    return time.perf_counter() - start


def read_all(store: LogStore, max_records: int, max_bytes: int) -> tuple[int, int, float]:
    offset, count, nbytes = store.first_offset, 0, 0
    start = time.perf_counter()
    while offset < store.next_offset:
        batch = store.read(offset, max_records, max_bytes)
        offset = batch.next_offset
        count += batch.count
        nbytes += len(batch.data)
    return count, nbytes, time.perf_counter() - start


def random_reads(store: LogStore, lookups: int) -> float:
    rng = random.Random(1)
    offsets = [rng.randrange(store.first_offset, store.next_offset) for _ in range(lookups)]
    start = time.perf_counter()
    for offset in offsets:
        store.read(offset, 1, 1 << 20)
    return time.perf_counter() - start


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--body", type=int, default=100, help="body bytes per record")
    parser.add_argument("--batch", type=int, default=1000, help="records per append")
    parser.add_argument(
        "--dir", default=None, help="where to put the disk log (default: a temp dir)"
    )
    args = parser.parse_args()
    body = os.urandom(args.body)
    records = args.records // args.batch * args.batch

    # Encoding alone: the per-record CPU cost every append pays.
    entries = [(None, None, body)] * args.batch
    start = time.perf_counter()
    total = 0
    for i in range(records // args.batch):
        total += len(encode_records(i * args.batch, 1_700_000_000_000, entries))
    report("encode_records", records, total, time.perf_counter() - start)
    frame_bytes = total

    # Memory store.
    tracemalloc.start()
    memory = MemoryLog()
    seconds = fill(memory, records, body, args.batch, sync=False)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    report("MemoryLog.append", records, frame_bytes, seconds)
    print(f"{'MemoryLog memory':<44} {held / records:7.1f} bytes/record ({held / 1e6:.1f} MB held)")
    count, nbytes, seconds = read_all(memory, 1000, 1 << 20)
    report("MemoryLog.read (1000 rec / 1 MiB)", count, nbytes, seconds)
    lookups = 20_000
    seconds = random_reads(memory, lookups)
    print(f"{'MemoryLog.read random offset, 1 record':<44} {seconds / lookups * 1e6:7.1f} us/read")

    # Disk store.
    root = args.dir or tempfile.mkdtemp(prefix="storage-micro-")
    try:
        for sync in (False, True):
            directory = os.path.join(root, f"log-sync-{sync}")
            disk = SegmentedLog.open(directory)
            seconds = fill(disk, records, body, args.batch, sync=sync)
            kb = frame_bytes / (records // args.batch) / 1024
            label = f"fsync per {args.batch}-record batch ({kb:.0f} KB)" if sync else "no fsync"
            report(f"SegmentedLog.append, {label}", records, frame_bytes, seconds)
            disk.close()
        disk = SegmentedLog.open(directory)
        on_disk = sum(
            os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory)
        )
        index_bytes = sum(
            os.path.getsize(os.path.join(directory, name))
            for name in os.listdir(directory)
            if name.endswith(".index")
        )
        print(
            f"{'SegmentedLog disk usage':<44} {on_disk / records:7.1f} bytes/record "
            f"({on_disk / 1e6:.1f} MB in {disk.segment_count} segments, index {index_bytes} bytes)"
        )
        count, nbytes, seconds = read_all(disk, 1000, 1 << 20)
        report("SegmentedLog.read (1000 rec / 1 MiB)", count, nbytes, seconds)
        count, nbytes, seconds = read_all(disk, 100_000, 8 << 20)
        report("SegmentedLog.read (8 MiB)", count, nbytes, seconds)
        seconds = random_reads(disk, lookups)
        line("SegmentedLog.read random offset, 1 record", f"{seconds / lookups * 1e6:7.1f} us/read")
        probes = 2_000
        rng = random.Random(2)
        start = time.perf_counter()
        for _ in range(probes):
            disk.offset_for_timestamp(1_700_000_000_000 + rng.randrange(records // args.batch))
        seconds = time.perf_counter() - start
        print(f"{'SegmentedLog.offset_for_timestamp':<44} {seconds / probes * 1e6:7.1f} us/lookup")
        data = disk.read(0, 10_000, 1 << 30).data
        seconds = timed(lambda: decode_records(data))
        report("decode_records (what a client does)", 10_000, len(data), seconds)
        disk.close()
        newest = max(name for name in os.listdir(directory) if name.endswith(".log"))
        newest_mb = os.path.getsize(os.path.join(directory, newest)) / 1e6
        seconds = timed(lambda: SegmentedLog.open(directory).close())
        line(
            "SegmentedLog.open (rescans newest segment)", f"{seconds:7.3f} s for {newest_mb:.1f} MB"
        )
    finally:
        if args.dir is None:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
