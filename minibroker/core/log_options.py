"""Log options and statistics: the plain values a log is created with and reports.

Kept apart from :mod:`minibroker.core.logs` so the rules for valid options
(and the way the metadata journal stores them) can be read on their own.
"""

from __future__ import annotations

from typing import Any, Final

from minibroker.core.durations import check_seconds, clamp_seconds
from minibroker.errors import BadRequest
from minibroker.log_store import MAX_SEGMENT_BYTES
from minibroker.value_class import Value

#: Smallest segment a client may ask for. Every segment on disk holds an open
#: file, so a tiny segment size would turn a long log into thousands of files.
MIN_SEGMENT_BYTES: Final = 1024
#: Longest age-based retention, in seconds (about 100 years: "forever", but finite).
MAX_RETENTION_SECONDS: Final = 100 * 365 * 86400.0
#: Largest size-based retention a client may ask for (an exabyte).
MAX_RETENTION_BYTES: Final = 2**60


class LogOptions(Value, frozen=True):
    """What a log is created with. Two creations agree iff these are equal.

    ``None`` means "no limit" for the retention options and "the storage
    default" (64 MiB) for ``segment_bytes``.
    """

    #: Old segments are deleted while the log would still hold this many bytes without them.
    retention_bytes: int | None = None
    #: Segments whose newest record is older than this many seconds are deleted.
    retention_seconds: float | None = None
    #: A new segment is started when the active one would grow past this size.
    segment_bytes: int | None = None
    #: Kafka batches get the broker's append time instead of the producer's
    #: (a Kafka topic's ``message.timestamp.type=LogAppendTime``); records
    #: from the other doors always carry the broker's time.
    append_time: bool = False

    def check(self) -> None:
        """Raise BadRequest if an option is out of range."""
        if self.retention_bytes is not None:
            _check_int("retention_bytes", self.retention_bytes, 1, MAX_RETENTION_BYTES)
        if self.retention_seconds is not None:
            check_seconds("retention_seconds", self.retention_seconds, MAX_RETENTION_SECONDS)
        if self.segment_bytes is not None:
            _check_int("segment_bytes", self.segment_bytes, MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES)
        if type(self.append_time) is not bool:
            raise BadRequest(f"append_time must be true or false, got {self.append_time!r}")

    @property
    def has_retention(self) -> bool:
        return self.retention_bytes is not None or self.retention_seconds is not None

    @property
    def retention_ms(self) -> int | None:
        if self.retention_seconds is None:
            return None
        return max(1, int(self.retention_seconds * 1000))

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for stats, error details and the metadata journal
        (``append_time`` only when set: the other doors never set it)."""
        values: dict[str, Any] = {
            "retention_bytes": self.retention_bytes,
            "retention_seconds": self.retention_seconds,
            "segment_bytes": self.segment_bytes,
        }
        if self.append_time:
            values["append_time"] = True
        return values

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LogOptions:
        """The inverse of :meth:`to_dict`; unknown keys are ignored (newer journals)."""
        seconds = raw.get("retention_seconds")
        return cls(
            retention_bytes=_int_or_none(raw.get("retention_bytes")),
            # Clamped, not refused: an older broker stored any positive value.
            retention_seconds=(
                None if seconds is None else clamp_seconds(float(seconds), MAX_RETENTION_SECONDS)
            ),
            segment_bytes=_int_or_none(raw.get("segment_bytes")),
            append_time=raw.get("append_time") is True,
        )


def _int_or_none(value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _check_int(name: str, value: int, minimum: int, maximum: int) -> None:
    if type(value) is not int or not minimum <= value <= maximum:
        raise BadRequest(f"{name} must be between {minimum} and {maximum}, got {value!r}")


class GroupStatistics(Value, frozen=True):
    """Where a consumer group stands: its committed offset and how far behind the end it is."""

    committed: int
    lag: int


class LogStatistics(Value, frozen=True):
    """A snapshot of one log, for ``log.stats``, the CLI and metrics."""

    name: str
    #: First retained offset (moves forward with retention).
    first_offset: int
    #: Offset the next appended record gets.
    next_offset: int
    #: End of what readers can see: records below it are stored per the fsync
    #: policy (equal to ``next_offset`` except for the moment before a group commit).
    high_watermark: int
    #: Bytes of retained records (framing included, index files not).
    bytes: int
    segments: int
    #: Consumer groups by name.
    groups: dict[str, GroupStatistics]
    options: LogOptions
    #: Records and bytes appended since the broker started (metrics counters).
    appended_records: int
    appended_bytes: int
    #: Records deleted by retention since the broker started.
    retained_away: int
    #: Live tail subscriptions and parked long-poll reads.
    tails: int
    waiting_reads: int

    @property
    def records(self) -> int:
        return self.next_offset - self.first_offset

    def to_dict(self) -> dict[str, Any]:
        """The ``log.stats`` result on the wire."""
        return {
            "log": self.name,
            "first_offset": self.first_offset,
            "next_offset": self.next_offset,
            "high_watermark": self.high_watermark,
            "records": self.records,
            "bytes": self.bytes,
            "segments": self.segments,
            "groups": {
                name: {"committed": g.committed, "lag": g.lag}
                for name, g in sorted(self.groups.items())
            },
            "options": self.options.to_dict(),
            "tails": self.tails,
            "waiting_reads": self.waiting_reads,
        }
