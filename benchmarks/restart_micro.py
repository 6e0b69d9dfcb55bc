"""Restart time of a log with a long history of small segments (issue 14, item 11).

Not a test (nothing is asserted about speed); run it by hand::

    python -m benchmarks.restart_micro                      # 30,000 segments
    python -m benchmarks.restart_micro --segments 5000 --no-serve

It builds a log of ``--segments`` small segments (three records each, about
1.2 KB) and times, each ``--repeat`` times, the median reported:

* ``SegmentedLog.open`` after a clean close and after a crash (no
  clean-shutdown marker: the newest segment is scanned), with the
  sealed-segment checkpoint (older segments opened lazily) and without it
  (every older segment checked at open, as before the checkpoint existed);
* unless ``--no-serve``: a real ``minibroker serve`` on a data directory
  holding that log, from launch to the first successful read of the log's
  first record (interpreter start included), with and without checkpoint.

"Warm" runs have the files in the page cache. "Cold" runs first evict every
file of the log from it with ``posix_fadvise(POSIX_FADV_DONTNEED)``, which
needs no privilege and leaves other processes' caches alone; the kernel's
directory-entry and inode caches stay warm (emptying those needs root and
``/proc/sys/vm/drop_caches``, which would also hit everyone sharing the
machine), so a true cold start after a reboot is slower than "cold" here.

Building the log skips fsyncs (they are the setup's cost, not what is
measured): the files are the same as the broker writes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import trio

import minibroker
from benchmarks.broker_process import BrokerProcess
from minibroker.storage import SegmentedLog, fileio
from minibroker.storage.checkpoint import CHECKPOINT_FILE_NAME
from minibroker.storage.commitlog import CLEAN_SHUTDOWN_FILE_NAME

LOG = "history"
#: Checking 30,000 segments at start takes tens of seconds on a loaded machine.
START_TIMEOUT = 600.0
#: The smallest the server accepts; every append of three ~400-byte records
#: starts a new segment.
SEGMENT_BYTES = 1024


def line(name: str, value: str) -> None:
    print(f"{name:<62} {value}", flush=True)


@contextlib.contextmanager
def no_fsync() -> Iterator[None]:
    """Make the build fast: the storage's fsyncs become no-ops for its duration."""
    saved = (fileio.datasync, fileio.fsync_directory, os.fsync)
    fileio.datasync = fileio.fsync_directory = os.fsync = lambda _: None  # type: ignore[assignment]
    try:
        yield
    finally:
        fileio.datasync, fileio.fsync_directory, os.fsync = saved  # type: ignore[assignment]


def build(directory: Path, segments: int) -> None:
    with no_fsync():
        log = SegmentedLog.open(directory, segment_bytes=SEGMENT_BYTES)
        try:
            for i in range(segments):
                log.append([b"record-%08d-%d" % (i, j) * 20 for j in range(3)], 1_700_000_000 + i)
        finally:
            log.close()


def evict(directory: Path) -> None:
    """Drop every file under ``directory`` from the page cache (no root needed)."""
    for root, _, names in os.walk(directory):
        for name in names:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


def report(name: str, run: Callable[[], tuple[float, float]], repeat: int) -> None:
    """Median wall-clock and CPU seconds of ``repeat`` runs.

    On a shared machine the wall clock includes waiting for a core; the CPU
    time of the process is what the open itself costs.
    """
    runs = [run() for _ in range(repeat)]
    wall = statistics.median(w for w, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    line(name, f"{wall:.3f} s wall, {cpu:.3f} s CPU")


def time_open(
    directory: Path, *, crashed: bool, checkpoint: bool, cold: bool
) -> tuple[float, float]:
    """One ``SegmentedLog.open`` of ``directory`` as a restart would find it."""
    saved = directory / (CHECKPOINT_FILE_NAME + ".saved")
    if not checkpoint:
        (directory / CHECKPOINT_FILE_NAME).rename(saved)
    if crashed:
        (directory / CLEAN_SHUTDOWN_FILE_NAME).unlink(missing_ok=True)
    if cold:
        evict(directory)
    started = time.perf_counter()
    cpu = time.process_time()
    log = SegmentedLog.open(directory, segment_bytes=SEGMENT_BYTES)
    cpu = time.process_time() - cpu
    elapsed = time.perf_counter() - started
    log.close()  # rewrites the checkpoint when it was missing: put the saved one back
    if not checkpoint:
        saved.replace(directory / CHECKPOINT_FILE_NAME)
    return elapsed, cpu


async def first_read(url: str) -> None:
    async with minibroker.connect(url) as mb:
        records = await mb.read(LOG, start=0, max_records=1)
        assert records, "the log is empty"


def time_serve(
    data_dir: Path, log_dir: Path, *, checkpoint: bool, cold: bool
) -> tuple[float, float]:
    """Launch to first read; the CPU seconds are the server's own (user + system)."""
    saved = log_dir / (CHECKPOINT_FILE_NAME + ".saved")
    if not checkpoint:
        (log_dir / CHECKPOINT_FILE_NAME).rename(saved)
    if cold:
        evict(data_dir)
    started = time.perf_counter()
    server = BrokerProcess.start(data_dir, start_timeout=START_TIMEOUT)
    try:
        trio.run(first_read, server.url)
        elapsed = time.perf_counter() - started
        cpu = process_cpu_seconds(server.pid)
    finally:
        server.stop()
    if not checkpoint:
        saved.replace(log_dir / CHECKPOINT_FILE_NAME)
    return elapsed, cpu


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a running process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def create_log(url: str) -> None:
    async with minibroker.connect(url) as mb:
        await mb.create_log(LOG, segment_bytes=SEGMENT_BYTES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--no-serve", action="store_true", help="skip the minibroker serve runs")
    parser.add_argument("--dir", default=None, help="where to build (default: a temp dir)")
    args = parser.parse_args(argv)
    root = Path(args.dir or tempfile.mkdtemp(prefix="restart-micro-"))
    try:
        data_dir = root / "data"
        server = BrokerProcess.start(data_dir)  # a real data dir, with the log's metadata
        try:
            trio.run(create_log, server.url)
        finally:
            server.stop()
        log_dir = data_dir / "namespaces" / "default" / "logs" / LOG
        started = time.perf_counter()
        build(log_dir, args.segments)
        size = sum(f.stat().st_size for f in log_dir.iterdir())
        line(
            f"built {args.segments} segments, {size / 1e6:.1f} MB",
            f"in {time.perf_counter() - started:.1f} s",
        )
        for cold in (False, True):
            temperature = "cold" if cold else "warm"
            for checkpoint in (True, False):
                how = "lazy (checkpoint)" if checkpoint else "every segment checked"
                for crashed in (False, True):
                    after = "crash" if crashed else "clean close"
                    report(
                        f"SegmentedLog.open, {temperature}, {how}, after {after}",
                        partial(
                            time_open, log_dir, crashed=crashed, checkpoint=checkpoint, cold=cold
                        ),
                        args.repeat,
                    )
            if not args.no_serve:
                for checkpoint in (True, False):
                    how = "lazy (checkpoint)" if checkpoint else "every segment checked"
                    report(
                        f"minibroker serve to first read, {temperature}, {how}",
                        partial(time_serve, data_dir, log_dir, checkpoint=checkpoint, cold=cold),
                        args.repeat,
                    )
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
