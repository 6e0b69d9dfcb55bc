"""The sealed-segment checkpoint: what lets a log open without opening its older segments.

Opening a log used to check every older (sealed) segment: open its file,
read its index, check its last records. That is cheap per segment but
grows with history: a log with 30,000 small segments took seconds to open,
and a cold page cache made it worse. Yet a sealed segment never changes
(it was fsynced before a newer one was created), so what the log needs to
know about it at start, where it ends, how big it is, its first and last
timestamps and its format, can be written down once, when it is sealed.

This module keeps those facts in one small file per log,
``.sealed_segments``: an 8-byte header (``MBSEAL`` and a u16 version, 1),
then one 48-byte entry per sealed segment, appended when the segment is
sealed::

    u64 base_offset   u64 next_offset   u64 size_bytes
    u64 first_timestamp_ms   u64 last_timestamp_ms
    u8  format (1 or 2)   3 reserved bytes   u32 crc32 of the 44 bytes before

Why it can be this simple:

- It is an optimisation, never the truth: a segment without a valid entry
  (the file missing, an entry torn by a crash, a bad CRC) is opened and
  checked the old way. So appending an entry needs no fsync.
- Entries are only trusted for a segment whose file exists and whose next
  segment starts exactly at the entry's ``next_offset``; the segment is
  checked (index, last records, size) when it is first read, and a
  mismatch then is reported as damage, like any damage to an older segment.
- When segments are deleted their entries become stale and are skipped; a
  later entry for the same base offset wins. The file is rewritten whole
  (atomically) when stale entries outnumber live ones, and at open when
  entries were missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Iterable
from typing import Final, NamedTuple

from minibroker.storage import fileio

log = logging.getLogger("minibroker.storage")

CHECKPOINT_FILE_NAME: Final = ".sealed_segments"
_HEADER: Final = b"MBSEAL" + (1).to_bytes(2, "big")
_FIELDS: Final = struct.Struct(">QQQQQB3x")
_CRC: Final = struct.Struct(">I")
_ENTRY: Final = struct.Struct(">QQQQQB3xI")
ENTRY_SIZE: Final = _ENTRY.size
_FORMATS: Final = {1: False, 2: True}


class SealedFacts(NamedTuple):
    """What a log must know about a sealed segment to open without reading it.

    A NamedTuple: an open builds one per sealed segment, tens of thousands
    for a long history, and a tuple is the cheapest thing to build.
    """

    base_offset: int
    next_offset: int
    size_bytes: int
    first_timestamp_ms: int
    last_timestamp_ms: int
    #: True for the batch format (format 2).
    batched: bool

    def to_bytes(self) -> bytes:
        fields = _FIELDS.pack(
            self.base_offset,
            self.next_offset,
            self.size_bytes,
            self.first_timestamp_ms,
            self.last_timestamp_ms,
            2 if self.batched else 1,
        )
        return fields + _CRC.pack(zlib.crc32(fields))


def read_checkpoint(directory: str) -> tuple[dict[int, SealedFacts], int]:
    """The valid entries of the checkpoint by base offset (the last one wins), and how
    many entries the file holds; ``({}, 0)`` when there is no usable file.
    """
    path = os.path.join(directory, CHECKPOINT_FILE_NAME)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return {}, 0
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return {}, 0
    if not data.startswith(_HEADER):
        log.warning("ignoring %s: not a sealed-segment checkpoint", path)
        return {}, 0
    body = memoryview(data)[len(_HEADER) :]
    whole = len(body) - len(body) % ENTRY_SIZE
    known: dict[int, SealedFacts] = {}
    bad = 0
    crc32 = zlib.crc32
    fields_size = _FIELDS.size
    entries = _ENTRY.iter_unpack(body[:whole])
    for position, (base, next_offset, size, first_ms, last_ms, version, crc) in zip(
        range(0, whole, ENTRY_SIZE), entries, strict=True
    ):
        if (
            crc32(body[position : position + fields_size]) != crc
            or version not in _FORMATS
            or next_offset <= base
            or first_ms > last_ms
        ):
            bad += 1
            continue
        known[base] = SealedFacts(base, next_offset, size, first_ms, last_ms, _FORMATS[version])
    if bad:
        log.warning("ignoring %d damaged entries of %s", bad, path)
    return known, whole // ENTRY_SIZE


def append_entry(directory: str, facts: SealedFacts) -> None:
    """Add one entry at the end of the checkpoint (created if missing); not fsynced.

    A lost or torn entry only costs the next open a check of that segment.
    """
    path = os.path.join(directory, CHECKPOINT_FILE_NAME)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o644)
    try:
        entry = facts.to_bytes()
        if os.fstat(fd).st_size == 0:
            entry = _HEADER + entry
        os.write(fd, entry)  # a short write is a torn entry: skipped when read
    finally:
        os.close(fd)


def rewrite_checkpoint(directory: str, sealed: Iterable[SealedFacts]) -> int:
    """Replace the checkpoint with exactly these entries, atomically; return how many."""
    entries = [facts.to_bytes() for facts in sealed]
    fileio.replace_file(directory, CHECKPOINT_FILE_NAME, _HEADER + b"".join(entries))
    return len(entries)


def remove_checkpoint(directory: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(directory, CHECKPOINT_FILE_NAME))
