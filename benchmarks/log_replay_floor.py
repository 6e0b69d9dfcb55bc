"""The Python floor of a log replay: the least CPU per record a consumer that checks
every record can spend, without sockets.

W3's replay is bound by its consumer process (the broker's share of a replay
is slicing bytes), so its ceiling is what that process must do per record,
whatever the transport: decode the frames the broker ships (check each
record's CRC, unpack its msgpack payload, build its ``Record``) and run the
harness's own check on it (``benchmarks/payload.py::Verifier``, as the W3
replayer in ``benchmarks/targets/minibroker.py`` does). This measures each
part on prepared chunks of about 1 MiB (what a tail push carries), as process
CPU time per record, best of ``--repeat`` runs, so that a loaded machine
disturbs it little. The record format fixes the parts marked "per record":
one ``zlib.crc32`` and one msgpack value per record (docs/storage.md).

    python -m benchmarks.log_replay_floor
    python -m benchmarks.log_replay_floor --records 200000 --target-rate 5100000
"""

from __future__ import annotations

import argparse
import gc
import time
import zlib
from collections.abc import Callable
from typing import Any

import msgpack

from benchmarks.payload import Verifier, make_bodies
from minibroker.log_store import Record
from minibroker.record_format import FRAME_HEADER_SIZE, decode_records_fast, encode_batch

#: Records per prepared chunk: about 1 MiB of 100-byte records, one tail push.
CHUNK_RECORDS = 8000


def cpu_per_record(work: Callable[[], object], records: int, repeat_runs: int) -> float:
    """Best process CPU time of ``work()`` over ``repeat_runs`` runs, in ns per record."""
    best = float("inf")
    for _ in range(repeat_runs):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best * 1e9 / records


def per_chunk(step: Callable[[Any], object], chunks: list[list[Any]]) -> None:
    """``step`` on every item, chunk by chunk, keeping one chunk's results at a time."""
    for chunk in chunks:
        list(map(step, chunk))


def new_record(fields: tuple[Any, ...]) -> Record:
    return tuple.__new__(Record, fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--body-size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--target-rate", type=float, default=0.0, help="records/s to compare the floor with"
    )
    args = parser.parse_args()
    n = args.records
    bodies = make_bodies(n, args.body_size)
    timestamp = int(time.time() * 1000)
    chunks = [
        encode_batch(first, timestamp, bodies[first : first + CHUNK_RECORDS])
        for first in range(0, n, CHUNK_RECORDS)
    ]
    blobs = [chunk.data for chunk in chunks]
    payloads: list[list[bytes]] = []
    for chunk in chunks:
        position = 0
        payloads.append([])
        for size in chunk.frame_sizes:
            payloads[-1].append(chunk.data[position + FRAME_HEADER_SIZE : position + size])
            position += size
    fields = [[msgpack.unpackb(p, use_list=False) for p in chunk] for chunk in payloads]
    records = [r for blob in blobs for r in decode_records_fast(blob)]
    batches = [records[i : i + 10_000] for i in range(0, n, 10_000)]
    # The prepared objects stay out of the collector's way (a consumer holds
    # one chunk at a time, not the whole log): only what a step builds is
    # tracked, and each step drops its results chunk by chunk.
    gc.collect()
    gc.freeze()

    def harness_check() -> None:
        verifier = Verifier(n, args.body_size)
        offset = 0
        for batch in batches:
            for record in batch:
                verifier.add(record.body)
                offset = int(record.offset) + 1
        assert verifier.distinct == n and offset == n

    def decode() -> None:
        for blob in blobs:
            decode_records_fast(blob)

    def decode_and_check() -> None:
        verifier = Verifier(n, args.body_size)
        for blob in blobs:
            for record in decode_records_fast(blob):
                verifier.add(record.body)
        assert verifier.distinct == n

    parts: list[tuple[str, Callable[[], object]]] = [
        ("W3 replayer's check (Verifier.add), records ready", harness_check),
        ("decode_records_fast (length, CRC, msgpack, Record)", decode),
        ("  of which crc32 per record (the format's CRC)", lambda: per_chunk(zlib.crc32, payloads)),
        ("  of which msgpack.unpackb per record", lambda: per_chunk(msgpack.unpackb, payloads)),
        ("  of which a Record per record", lambda: per_chunk(new_record, fields)),
        ("  (crc32 of whole chunks, for comparison)", lambda: list(map(zlib.crc32, blobs))),
        ("decode + check: the consumer without transport", decode_and_check),
    ]
    print(f"{n:,} records of {args.body_size} B, chunks of {CHUNK_RECORDS:,}; CPU ns per record")
    results = {}
    for label, work in parts:
        results[label] = cost = cpu_per_record(work, n, args.repeat)
        print(f"{cost:8.0f}  {label}")
    floor = results[parts[-1][0]]
    print(f"one core at that floor: {1e9 / floor:,.0f} records/s at most")
    if args.target_rate:
        budget = 1e9 / args.target_rate
        print(
            f"{args.target_rate:,.0f} records/s leaves {budget:.0f} ns per record; "
            f"the check alone takes {results[parts[0][0]]:.0f}"
        )


if __name__ == "__main__":
    main()
