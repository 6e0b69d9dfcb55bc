"""Sequential reads of frames in small steps through batches of entries.

Not a test (nothing is asserted about speed); run it by hand::

    python -m benchmarks.sequential_reads --records 20000 --rounds 3

A reader of frames that steps through a log by ``max_records`` 1 or 10
(an old client, the HTTP API paging, a tail without ``read.batches``)
starts and stops inside the 1000-record batches that appends store. This
prints the CPU time per record read for such readers, memory and disk
stores, with the cache of decoded batches
(``minibroker.record_format.DecodedBatches``) on and off, alternated
(``--rounds``), and a replay as the Python clients do it (``read_stored``,
1000 records per read). Run it under the code before the cache to compare
with that too: without the cache, both columns are the same.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

from minibroker import record_format
from minibroker.log_store import LogStore
from minibroker.storage.commitlog import SegmentedLog
from minibroker.storage.memory import MemoryLog


def fill(store: LogStore, records: int, body: bytes, batch: int) -> None:
    entries = [(None, None, body)] * batch
    for i in range(records // batch):
        store.append(entries, 1_700_000_000_000 + i)


def read_in_steps(store: LogStore, max_records: int) -> int:
    offset, count = store.first_offset, 0
    while offset < store.next_offset:
        batch = store.read(offset, max_records, 1 << 20)
        offset = batch.next_offset
        count += batch.count
    return count


def replay_stored(store: LogStore) -> int:
    offset, count = store.first_offset, 0
    read_stored = getattr(store, "read_stored", None)
    if read_stored is None:
        return 0
    while offset < store.next_offset:
        batch = read_stored(offset, 1000, 1 << 20)
        offset = batch.next_offset
        count += batch.count
    return count


def cpu_per_record(action: Callable[[], int]) -> float:
    start = time.process_time()
    count = action()
    return (time.process_time() - start) / max(count, 1) * 1e6


def set_cache(on: bool) -> str:
    cache = getattr(record_format, "_DECODED", None)
    if cache is None:
        return "absent"
    cache.clear()
    cache.max_batches = 8 if on else 0
    return "on" if on else "off"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--body", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    body = os.urandom(args.body)
    with tempfile.TemporaryDirectory() as directory:
        memory = MemoryLog()
        fill(memory, args.records, body, args.batch)
        disk = SegmentedLog.open(directory)
        fill(disk, args.records, body, args.batch)
        print(
            f"{args.records} records of {args.body} bytes, {args.batch} per append; "
            f"CPU us per record read, load {os.getloadavg()[0]:.1f}"
        )
        cases: list[tuple[str, Callable[[], int]]] = [
            ("memory read max_records=1", lambda: read_in_steps(memory, 1)),
            ("memory read max_records=10", lambda: read_in_steps(memory, 10)),
            ("disk read max_records=1", lambda: read_in_steps(disk, 1)),
            ("disk read max_records=10", lambda: read_in_steps(disk, 10)),
            ("memory read_stored 1000 (replay)", lambda: replay_stored(memory)),
            ("disk read_stored 1000 (replay)", lambda: replay_stored(disk)),
        ]
        for name, action in cases:
            results: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for on in (False, True):
                    label = set_cache(on)
                    results.setdefault(label, []).append(cpu_per_record(action))
            text = "  ".join(
                f"cache {label}: best {min(v):8.2f} (runs {', '.join(f'{x:.2f}' for x in v)})"
                for label, v in results.items()
            )
            print(f"{name:34} {text}")
        disk.close()


if __name__ == "__main__":
    main()
