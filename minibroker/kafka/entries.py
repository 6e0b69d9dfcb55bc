"""Counting a request's array entries on its bytes, before kio decodes it.

kio builds a Python object for every entry of every array as it decodes, so
the bound on entries (``wire.MAX_REQUEST_ENTRIES``) checked on the decoded
request came too late: a 10 MB Metadata request naming 5,000,000 empty topic
names held the event loop, and every client of the server, for 8.4 s while
kio decoded it, and a 100 MiB one (the request limit) for over a minute.

:func:`count_entries` walks the request's schema (kio's dataclasses) over
the bytes, reading lengths and skipping values, and stops as soon as the
arrays have claimed more entries than the budget, so its work is bounded by
the budget whatever the request's size. It copies nothing: a Produce's
records are skipped by their length.
"""

from __future__ import annotations

import struct
from dataclasses import fields
from functools import cache
from typing import Final

from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveTupleField,
    classify_field,
)

#: Bytes of the fixed-size primitive types kio's schemas use.
_FIXED: Final = {
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "uint16": 2,
    "int32": 4,
    "uint32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "timedelta_i64": 8,
    "datetime_i64": 8,
    "float64": 8,
    "uuid": 16,
}
_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")


class TooManyEntries(ValueError):
    """The request's arrays claim more entries than the budget."""


class Overrun(ValueError):
    """A length runs past the end of the request."""


#: One field's reading plan: (kind, kafka type or None, nested entity or None).
#: kind: "value", "values" (primitive array), "entity", "entities".
_Step = tuple[str, str | None, type | None]


@cache
def _plan(cls: type) -> tuple[_Step, ...]:
    """The fields of the kio entity ``cls`` in wire order (tagged ones are in
    the entity's tagged section, skipped whole)."""
    steps: list[_Step] = []
    for f in fields(cls):
        if "tag" in f.metadata:
            continue
        kind = classify_field(f)
        if isinstance(kind, EntityTupleField):
            steps.append(("entities", None, kind.type_))
        elif isinstance(kind, EntityField):
            steps.append(("entity", None, kind.type_))
        elif isinstance(kind, PrimitiveTupleField):
            steps.append(("values", f.metadata["kafka_type"], None))
        else:
            steps.append(("value", f.metadata["kafka_type"], None))
    return tuple(steps)


def count_entries(cls: type, data: bytes, offset: int, budget: int) -> int:
    """``budget`` less the array entries of the request ``cls`` encoded at
    ``offset`` of ``data``.

    Raises :class:`TooManyEntries` as soon as the arrays claim more than
    ``budget`` (before the entries are walked), :class:`Overrun` when a
    length runs past the end of ``data``.
    """
    _, budget = _entity(cls, data, offset, budget)
    return budget


def _entity(cls: type, data: bytes, pos: int, budget: int) -> tuple[int, int]:
    flexible: bool = cls.__flexible__  # type: ignore[attr-defined]
    for kind, kafka_type, inner in _plan(cls):
        if kind == "value":
            assert kafka_type is not None
            pos = _skip_value(kafka_type, flexible, data, pos)
            continue
        if kind == "entity":
            assert inner is not None
            pos, budget = _entity(inner, data, pos, budget)
            continue
        count, pos = _array_length(flexible, data, pos)
        budget -= count
        if budget < 0:
            raise TooManyEntries
        if kind == "entities":
            assert inner is not None
            for _ in range(count):
                pos, budget = _entity(inner, data, pos, budget)
        else:
            assert kafka_type is not None
            size = _FIXED.get(kafka_type)
            if size is not None:
                pos += size * count
            else:
                for _ in range(count):
                    pos = _skip_value(kafka_type, flexible, data, pos)
        if pos > len(data):
            raise Overrun
    if flexible:
        pos, budget = skip_tagged(data, pos, budget)
    return pos, budget


def _array_length(flexible: bool, data: bytes, pos: int) -> tuple[int, int]:
    """An array's entry count (0 for a null array) and the position after it."""
    if flexible:
        count, pos = _uvarint(data, pos)
        return max(count - 1, 0), pos
    if pos + 4 > len(data):
        raise Overrun
    return max(_I32.unpack_from(data, pos)[0], 0), pos + 4


def _skip_value(kafka_type: str, flexible: bool, data: bytes, pos: int) -> int:
    size = _FIXED.get(kafka_type)
    if size is not None:
        pos += size
    elif flexible:  # compact string, bytes or records: uvarint length + 1
        length, pos = _uvarint(data, pos)
        pos += max(length - 1, 0)
    elif kafka_type == "string":
        if pos + 2 > len(data):
            raise Overrun
        pos += 2 + max(_I16.unpack_from(data, pos)[0], 0)
    else:  # bytes, records
        if pos + 4 > len(data):
            raise Overrun
        pos += 4 + max(_I32.unpack_from(data, pos)[0], 0)
    if pos > len(data):
        raise Overrun
    return pos


def skip_tagged(data: bytes, pos: int, budget: int) -> tuple[int, int]:
    """Past a flexible entity's tagged fields (tag, size, bytes each); each
    counts as an entry, so an absurd count stops at the budget too."""
    count, pos = _uvarint(data, pos)
    budget -= count
    if budget < 0:
        raise TooManyEntries
    for _ in range(count):
        _, pos = _uvarint(data, pos)
        size, pos = _uvarint(data, pos)
        pos += size
        if pos > len(data):
            raise Overrun
    return pos, budget


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned varint (at most 5 bytes: Kafka's lengths and counts are 32-bit)."""
    value = 0
    for shift in range(0, 35, 7):
        if pos >= len(data):
            raise Overrun
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise Overrun
