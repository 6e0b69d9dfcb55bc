"""The shared msgpack packers give back the memory of a big frame.

A msgpack ``Packer`` keeps its buffer at the largest size it ever packed;
the protocol reuses one for every frame, so without care one 4 MiB answer
would keep 4-8 MiB allocated for the life of the broker (found by diffing
tracemalloc snapshots around create, use and delete of a log).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import pytest

from minibroker.protocol.codec import SharedPacker, pack_frame

BIG = 4 * 1024 * 1024


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def retained_after(pack: object) -> int:
    """Bytes still allocated after packing a big value and dropping the result."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    frame = pack({"op": "ok", "result": b"x" * BIG})  # type: ignore[operator]
    assert len(frame) > BIG
    del frame
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before


#: What may stay: at most a fresh Packer's buffer (the big frame itself is 4 MiB).
ALLOWED = 2 * SharedPacker.KEEP_BYTES


def test_pack_frame_keeps_no_big_buffer(traced: None) -> None:
    pack_frame({"op": "ok"})  # the packer exists and has its usual buffer
    assert retained_after(pack_frame) < ALLOWED


def test_shared_packer_reuses_its_buffer_for_small_values_only(traced: None) -> None:
    packer = SharedPacker()
    inner = id(packer._packer)
    packer.pack(b"x" * 1000)
    assert id(packer._packer) == inner  # reused: no new Packer per small frame
    assert retained_after(packer.pack) < ALLOWED
