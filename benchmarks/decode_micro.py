"""Decode throughput of the server's frame decoder, without sockets.

The decoder is the first thing every byte a client sends goes through, so
its limits (frame size, container lengths) must cost nothing measurable on
the fast path. This feeds prepared streams in 64 KiB chunks through
``FrameDecoder`` (what ``Session.receive_data`` does) and reports frames and
messages per second, best of ``--repeat`` runs. Time is the process's CPU
time, not the wall clock, and the best run counts: on a shared machine that
is the measure least disturbed by other work.

    python -m benchmarks.decode_micro
    python -m benchmarks.decode_micro --repeat 9 --json decode.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

# The server's request decoders, fast paths included (handlers register them).
from minibroker.protocol.codec import FrameDecoder, pack_frame

CHUNK = 65536


@dataclass(frozen=True)
class Case:
    name: str
    #: Frames in the prepared stream, and messages they carry in all.
    frames: int
    messages: int
    stream: bytes


def _cases() -> list[Case]:
    body = b"x" * 100
    pings = b"".join(pack_frame({"op": "ping", "id": i}) for i in range(20_000))
    one = b"".join(
        pack_frame({"op": "publish", "id": i, "topic": "bench.t", "messages": [{"body": body}]})
        for i in range(20_000)
    )
    batch = [{"body": body} for _ in range(1000)]
    batches = b"".join(
        pack_frame({"op": "publish", "id": i, "topic": "bench.t", "messages": batch})
        for i in range(50)
    )
    big_batch = [{"body": body} for _ in range(10_000)]
    big_batches = b"".join(
        pack_frame({"op": "publish", "id": i, "topic": "bench.t", "messages": big_batch})
        for i in range(5)
    )
    appends = b"".join(
        pack_frame({"op": "append", "id": i, "log": "bench", "records": batch}) for i in range(50)
    )
    return [
        Case("ping", 20_000, 20_000, pings),
        Case("publish of 1 (100 B)", 20_000, 20_000, one),
        Case("publish of 1000 (100 B)", 50, 50_000, batches),
        Case("append of 1000 (100 B)", 50, 50_000, appends),
        # Over 200 KB: the frame whose containers are checked while decoding.
        Case("publish of 10000 (100 B)", 5, 50_000, big_batches),
    ]


def _decode_all(stream: bytes) -> int:
    decoder = FrameDecoder()
    decoded = 0
    for start in range(0, len(stream), CHUNK):
        decoder.receive_data(stream[start : start + CHUNK])
        for _ in decoder.frames():
            decoded += 1
    return decoded


def best_seconds(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


@dataclass(frozen=True)
class Row:
    case: str
    frames_per_second: float
    messages_per_second: float
    megabytes_per_second: float


def measure(repeat: int) -> list[Row]:
    rows = []
    for case in _cases():
        assert _decode_all(case.stream) == case.frames
        seconds = best_seconds(lambda stream=case.stream: _decode_all(stream), repeat)  # type: ignore[misc]
        rows.append(
            Row(
                case.name,
                case.frames / seconds,
                case.messages / seconds,
                len(case.stream) / seconds / 1e6,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode_micro", description=__doc__)
    parser.add_argument("--repeat", type=int, default=7, help="runs per case; the best counts")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = measure(args.repeat)
    print(f"{'case':<26} {'frames/s':>12} {'messages/s':>12} {'MB/s':>8}")
    for row in rows:
        print(
            f"{row.case:<26} {row.frames_per_second:>12,.0f} "
            f"{row.messages_per_second:>12,.0f} {row.megabytes_per_second:>8.1f}"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(row) for row in rows], out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
