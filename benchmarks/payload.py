"""Message bodies that can be checked on arrival.

Every body starts with its sequence number (8 bytes, big-endian) followed by a
filler that depends on the sequence number, so a receiver can tell which
message it got and whether the bytes are intact. A :class:`Verifier` keeps a
bitmap of the sequence numbers seen and a checksum (the sum of the CRC-32 of
every distinct body); the parent compares it with :func:`expected_checksum`.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

SEQ = struct.Struct(">Q")
MIN_BODY_SIZE = SEQ.size
_MASK = (1 << 64) - 1
# 256 distinct bytes repeated: the filler is a slice of it that starts at seq % 251,
# so two bodies of different messages differ beyond their sequence numbers too.
_FILLER = bytes(range(256)) * 4096


def make_body(seq: int, size: int) -> bytes:
    """The body of message number ``seq``: ``size`` bytes (at least 8)."""
    start = seq % 251
    return SEQ.pack(seq) + _FILLER[start : start + size - SEQ.size]


def make_bodies(count: int, size: int, first: int = 0) -> list[bytes]:
    """Bodies ``first`` .. ``first + count - 1``, built before timing starts."""
    if size > len(_FILLER):
        raise ValueError(f"body size {size} is larger than {len(_FILLER)} bytes")
    return [make_body(seq, size) for seq in range(first, first + count)]


def body_seq(body: bytes) -> int:
    """The sequence number a body carries."""
    return int(SEQ.unpack_from(body)[0])


@lru_cache(maxsize=16)
def expected_checksum(count: int, size: int) -> int:
    """The checksum a :class:`Verifier` reaches after every body 0..count-1 once."""
    total = 0
    for seq in range(count):
        total += zlib.crc32(make_body(seq, size))
    return total & _MASK


def batched(items: list[bytes], size: int) -> Iterable[list[bytes]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Verifier:
    """Counts and checks the bodies that arrived at one receiver."""

    __slots__ = (
        "body_size",
        "checksum",
        "corrupt",
        "distinct",
        "duplicates",
        "expected",
        "seen",
        "t_first",
        "t_last",
    )

    def __init__(self, expected: int, body_size: int) -> None:
        self.expected = expected
        self.body_size = body_size
        self.seen = bytearray(expected)
        self.distinct = 0
        self.duplicates = 0
        self.corrupt = 0
        self.checksum = 0
        self.t_first: float | None = None
        self.t_last: float | None = None

    @property
    def done(self) -> bool:
        return self.distinct >= self.expected

    def add(self, body: bytes) -> None:
        """Record one arrival (stamps the clock, so call it as the body arrives)."""
        now = time.perf_counter()
        if self.t_first is None:
            self.t_first = now
        self.t_last = now
        if len(body) != self.body_size:
            self.corrupt += 1
            return
        seq = SEQ.unpack_from(body)[0]
        if seq >= self.expected:
            self.corrupt += 1
        elif self.seen[seq]:
            self.duplicates += 1
        else:
            self.seen[seq] = 1
            self.distinct += 1
            self.checksum = (self.checksum + zlib.crc32(body)) & _MASK

    def report(self) -> dict[str, Any]:
        """What the parent needs to judge the run (plain values, picklable)."""
        return {
            "distinct": self.distinct,
            "duplicates": self.duplicates,
            "corrupt": self.corrupt,
            "checksum": self.checksum,
            "t_first": self.t_first,
            "t_last": self.t_last,
        }


def verify_report(report: dict[str, Any], count: int, size: int) -> tuple[str | None, str]:
    """Judge a receiver's report: (failure reason or None, remark for a passing run)."""
    distinct = int(report.get("distinct", 0))
    if distinct != count:
        remark = f" ({report['remark']})" if report.get("remark") else ""
        return f"lost {count - distinct} of {count} messages{remark}", ""
    if report.get("corrupt", 0):
        return f"{report['corrupt']} corrupt or unexpected bodies", ""
    if report.get("checksum") != expected_checksum(count, size):
        return "checksum mismatch: some bodies arrived altered", ""
    duplicates = int(report.get("duplicates", 0))
    return None, (f"{duplicates} duplicate deliveries" if duplicates else "")
