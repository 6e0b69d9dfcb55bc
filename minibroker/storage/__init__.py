"""Append-only logs: the segmented store on disk and its in-memory twin.

Synchronous and free of Trio: the server decides when to call in (and when
to fsync), this package only keeps bytes safe and finds them again.

- :mod:`~minibroker.record_format`: the record format (also the wire format of log reads)
- :mod:`~minibroker.log_store`: the :class:`LogStore` interface
- :mod:`~minibroker.storage.chain`: segments in order: append, read, retention
- :mod:`~minibroker.storage.memory`: :class:`MemoryLog`
- :mod:`~minibroker.storage.index`, :mod:`~minibroker.storage.segment`,
  :mod:`~minibroker.storage.commitlog`: :class:`SegmentedLog` on disk
- :mod:`~minibroker.storage.fd_cache`: the bounded cache of older segments' open files
- :mod:`~minibroker.storage.fileio`: the system calls, and the test seam for them

See docs/storage.md for the design and the byte formats.
"""

from typing import TYPE_CHECKING, Any

from minibroker.log_store import Entry, LogStore, Record, RecordBatch
from minibroker.record_format import (
    CorruptRecord,
    decode_records,
    encode_records,
    scan_valid_prefix,
)
from minibroker.storage.chain import DEFAULT_SEGMENT_BYTES
from minibroker.storage.memory import MemoryLog

if TYPE_CHECKING:
    from minibroker.storage.commitlog import RecoveryReport, SegmentedLog
    from minibroker.storage.segment import DEFAULT_INDEX_INTERVAL_BYTES

#: The on-disk store's names, imported on first use: a broker without a
#: data directory (and ``minibroker serve``'s start-up) does not load it.
_ON_DISK = frozenset({"RecoveryReport", "SegmentedLog", "DEFAULT_INDEX_INTERVAL_BYTES"})


def __getattr__(name: str) -> Any:
    if name not in _ON_DISK:
        raise AttributeError(f"module 'minibroker.storage' has no attribute {name!r}")
    from minibroker.storage import commitlog, segment

    globals().update(
        RecoveryReport=commitlog.RecoveryReport,
        SegmentedLog=commitlog.SegmentedLog,
        DEFAULT_INDEX_INTERVAL_BYTES=segment.DEFAULT_INDEX_INTERVAL_BYTES,
    )
    return globals()[name]


__all__ = [
    "DEFAULT_INDEX_INTERVAL_BYTES",
    "DEFAULT_SEGMENT_BYTES",
    "CorruptRecord",
    "Entry",
    "LogStore",
    "MemoryLog",
    "Record",
    "RecordBatch",
    "RecoveryReport",
    "SegmentedLog",
    "decode_records",
    "encode_records",
    "scan_valid_prefix",
]
