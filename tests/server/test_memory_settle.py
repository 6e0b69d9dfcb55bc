"""MemorySettler: a full collection and a heap trim at the first idle moment
after the RSS grew, never while frames come in (server/memory_settle.py)."""

from __future__ import annotations

import gc
import weakref

from minibroker.server.memory_settle import MemorySettler, collect_and_trim, resident_bytes

MiB = 1024 * 1024


class Fake:
    def __init__(self) -> None:
        self.frames = 0
        self.rss = 32 * MiB
        self.settles = 0

    def settle(self) -> None:
        self.settles += 1
        self.rss = 33 * MiB

    def settler(self) -> MemorySettler:
        return MemorySettler(
            lambda: self.frames, rss=lambda: self.rss, settle=self.settle, slack=8 * MiB
        )


def test_settles_once_idle_after_growth_and_never_while_busy() -> None:
    fake = Fake()
    settler = fake.settler()
    assert not settler.tick()  # idle, but nothing grew
    fake.rss = 90 * MiB
    for _ in range(3):
        fake.frames += 100  # a burst: frames keep coming in
        assert not settler.tick()
    assert settler.tick()  # the first idle interval after it
    assert fake.settles == 1 and fake.rss == 33 * MiB
    assert not settler.tick()  # back at the baseline: nothing more to do
    fake.rss = 40 * MiB  # below baseline + slack
    assert not settler.tick()
    fake.rss = 42 * MiB
    assert settler.tick()
    assert fake.settles == 2 and settler.settled == 2


def test_without_a_reading_of_the_rss_it_never_settles() -> None:
    fake = Fake()
    settler = MemorySettler(lambda: 0, rss=lambda: None, settle=fake.settle)
    assert not settler.tick()
    assert fake.settles == 0


def test_the_real_settle_empties_garbage_and_the_rss_is_read() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    gc.disable()
    try:
        garbage = weakref.ref(Cycle())
        assert garbage() is not None
        collect_and_trim()
        assert garbage() is None
    finally:
        gc.enable()
    rss = resident_bytes()
    assert rss is not None and rss > MiB
