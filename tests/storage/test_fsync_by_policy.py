"""What each ``--fsync`` policy fsyncs, counted (docs/storage.md, "What each
policy fsyncs").

Every fsync the storage makes goes through ``fileio.datasync``,
``fileio.fsync_file`` or ``os.fsync``; the tests count them around writes.
``never`` must fsync nothing for a write (a log append or commit, a durable
queue's put and ack); what it still fsyncs is the structure recovery trusts,
once per sealed segment (its data and index, and the directory entry of the
segment that follows), never per write. ``always`` fsyncs each write and
``batch`` each group commit.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from minibroker.cli import build_parser
from minibroker.core.config import FsyncPolicy
from minibroker.embedded import open_broker
from minibroker.storage import fileio

WRITES = 20


class Fsyncs:
    """Counts every fsync of the storage, by the function that asked for it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by_caller: Counter[str] = Counter()
        for owner, name in ((fileio, "datasync"), (fileio, "fsync_file"), (os, "fsync")):
            monkeypatch.setattr(owner, name, self._counting(getattr(owner, name)))

    def _counting(self, real: Callable[[int], None]) -> Callable[[int], None]:
        def fsync(fd: int) -> None:
            self.by_caller[sys._getframe(1).f_code.co_name] += 1
            real(fd)

        return fsync

    @contextmanager
    def counting(self) -> Iterator[Counter[str]]:
        """The fsyncs made inside the block."""
        before = Counter(self.by_caller)
        seen: Counter[str] = Counter()
        yield seen
        seen.update(self.by_caller - before)


async def _write(mb: Any, writes: int) -> None:
    """``writes`` log appends, durable puts and acks, each awaited (confirmed)."""
    for _ in range(writes):
        await mb.append("events", b"x" * 100)
        await mb.put("jobs", b"y" * 100)
    for delivery in await mb.fetch("jobs", max_messages=writes):
        await delivery.ack()


@pytest.mark.parametrize("policy", ["never", "batch", "always"])
async def test_writes_are_fsynced_as_the_policy_says(
    policy: FsyncPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs = Fsyncs(monkeypatch)
    async with open_broker(data_dir=tmp_path, fsync=policy) as broker, broker.connect() as mb:
        await mb.create_log("events")
        await mb.declare_queue("jobs", durable=True)
        with fsyncs.counting() as during:
            await _write(mb, WRITES)
    total = sum(during.values())
    if policy == "never":
        assert during == Counter()  # nothing, not even once
    elif policy == "always":
        assert total >= 3 * WRITES  # each append, put and ack on its own
    else:
        # Group commit: one fsync round per batch; each write here is awaited
        # before the next is sent, so a batch of one, but never more rounds.
        assert 0 < total <= 2 * (3 * WRITES)


async def test_never_fsyncs_only_the_segments_it_seals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each roll fsyncs the sealed segment's data and index, and the new
    segment's directory entry: three per roll, none per append."""
    fsyncs = Fsyncs(monkeypatch)
    async with open_broker(data_dir=tmp_path, fsync="never") as broker, broker.connect() as mb:
        await mb.create_log("events", segment_bytes=4096)
        with fsyncs.counting() as during:
            for _ in range(200):
                await mb.append("events", b"x" * 100)
        rolls = (await mb.log_stats("events")).segments - 1
    assert rolls >= 3
    assert during == Counter(sync=rolls, _write_index_file=rolls, fsync_directory=rolls)


def test_serve_help_says_what_never_still_fsyncs(capsys: pytest.CaptureFixture[str]) -> None:
    """The help promised "when to fsync durable writes" and nothing more, while
    ``never`` fsynced every sealed segment: it now says so, and where to read why."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "'never' fsyncs no write" in text
    assert "a segment when it is sealed" in text
    assert "docs/storage.md" in text
