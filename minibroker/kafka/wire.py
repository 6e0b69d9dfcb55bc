"""Kafka's framing and request headers, and kio's codecs for the bodies.

A Kafka request is ``i32 size`` followed by a request header (``i16
api_key, i16 api_version, i32 correlation_id, nullable string client_id``,
plus tagged fields in flexible versions) and the body. A response is ``i32
size``, ``i32 correlation_id`` (response header v0; plus tagged fields, v1,
in flexible versions other than ApiVersions') and the body. Of the flexible
versions (KIP-482) only ListGroups v3-4 are implemented: the clients fall
back to the older versions of everything else.

The header is parsed by hand because it must be read before the version is
known to be one we support (a flexible ApiVersions v3 request still has to be
answered). Bodies are decoded and encoded by kio's generated dataclasses
(Kafka's own JSON schemas), one reader and writer per (API, version), built
once and cached.
"""

from __future__ import annotations

import io
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import cache
from types import NoneType
from typing import Any, Final, get_args, get_origin

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

from minibroker.kafka.entries import Overrun, TooManyEntries, count_entries, skip_tagged

#: ``size`` prefix of every frame, both ways.
SIZE: Final = struct.Struct(">i")
_HEADER: Final = struct.Struct(">hhih")
_RESPONSE_PREFIX: Final = struct.Struct(">ii")

API_NAMES: Final = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    15: "DescribeGroups",
    16: "ListGroups",
    17: "SaslHandshake",
    18: "ApiVersions",
    19: "CreateTopics",
    20: "DeleteTopics",
    21: "DeleteRecords",
    22: "InitProducerId",
    29: "DescribeAcls",
    30: "CreateAcls",
    31: "DeleteAcls",
    32: "DescribeConfigs",
    33: "AlterConfigs",
    36: "SaslAuthenticate",
    37: "CreatePartitions",
    42: "DeleteGroups",
    44: "IncrementalAlterConfigs",
    47: "OffsetDelete",
}

#: (API key) -> (lowest, highest) version this front end decodes and answers.
#: Only non-flexible versions: every client we test falls back to them (see
#: docs/kafka.md for the table and why each floor is where it is).
IMPLEMENTED: Final = {
    0: (3, 7),
    1: (4, 11),
    2: (1, 5),
    3: (0, 5),
    8: (2, 7),
    9: (1, 5),
    10: (0, 2),
    11: (0, 5),
    12: (0, 3),
    13: (0, 3),
    14: (0, 3),
    15: (0, 2),
    16: (0, 4),
    17: (1, 1),
    18: (0, 2),
    19: (2, 4),
    20: (1, 3),
    21: (0, 1),
    22: (0, 1),
    29: (1, 1),
    30: (1, 1),
    31: (1, 1),
    32: (1, 3),
    33: (0, 1),
    36: (0, 1),
    37: (0, 1),
    42: (0, 1),
    44: (0, 0),
    47: (0, 0),
}

#: What ApiVersions advertises. Produce is advertised from 0 although v0-2
#: are refused: librdkafka before 2.11.1 silently turns compression off
#: unless the broker's Produce range starts at 0 (Apache Kafka 4 does the same).
ADVERTISED: Final = {**IMPLEMENTED, 0: (0, 7)}

#: The most array elements (topics, partitions, group ids, configs...) one
#: request may hold, all arrays together. Each costs its handler and kio's
#: response writer about 10-20 µs, on the event loop every client shares: an
#: 8 MB OffsetFetch naming 2,000,000 partitions held every connection up for
#: 28 s. 100,000 is a hundred topics of MAX_PARTITIONS (1,000) each.
MAX_REQUEST_ENTRIES: Final = 100_000
#: Bodies longer than this have their entries counted before kio decodes them
#: (``decode_request``); a shorter one cannot hold enough entries to matter,
#: and the hot path's small Produce and Fetch requests skip the walk.
COUNT_BEFORE_DECODING: Final = 64 * 1024


class FrameTooLarge(ValueError):
    """A request's size prefix is above the limit (or negative)."""


@dataclass(frozen=True, slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    #: Where the body starts in the frame.
    body_offset: int


class MalformedRequest(ValueError):
    """The frame is too short for a request header or its client id is not UTF-8."""


def parse_header(frame: bytes) -> RequestHeader:
    """The request header at the start of ``frame`` (the size prefix already removed)."""
    if len(frame) < _HEADER.size:
        raise MalformedRequest(f"a {len(frame)}-byte request is too short for a header")
    api_key, version, correlation_id, length = _HEADER.unpack_from(frame)
    offset = _HEADER.size
    client_id: str | None = None
    if length >= 0:
        end = offset + length
        if end > len(frame):
            raise MalformedRequest("the client id runs past the end of the request")
        try:
            client_id = frame[offset:end].decode()
        except UnicodeDecodeError:
            raise MalformedRequest("the client id is not UTF-8") from None
        offset = end
    if is_flexible(api_key, version):
        try:  # request header v2: the client id is followed by tagged fields
            offset, _ = skip_tagged(frame, offset, MAX_REQUEST_ENTRIES)
        except (Overrun, TooManyEntries):
            raise MalformedRequest("the request header's tagged fields are malformed") from None
    return RequestHeader(api_key, version, correlation_id, client_id, offset)


def is_flexible(api_key: int, version: int) -> bool:
    """Whether a version this front end implements is a flexible one (KIP-482:
    compact strings and arrays, tagged fields, header v2 and v1). Versions it
    does not implement are answered without reading their body."""
    return (api_key, version) in FLEXIBLE


#: The flexible (API key, version) pairs among those implemented.
FLEXIBLE: Final = frozenset(
    (api_key, version)
    for api_key, (low, high) in IMPLEMENTED.items()
    for version in range(low, high + 1)
    if load_request_schema(api_key, version).__flexible__
)


def split_frames(buffer: bytearray, max_bytes: int) -> list[bytes]:
    """Cut the complete frames off the front of ``buffer`` (in place), size prefixes removed.

    Raises :class:`FrameTooLarge` as soon as a size prefix is out of range,
    before its body is read, so an absurd prefix never makes us buffer it.
    """
    frames: list[bytes] = []
    pos = 0
    end = len(buffer)
    too_large = None
    # Frames are copied out through a view: slicing the bytearray itself would
    # copy each frame twice (a Produce request is up to a megabyte).
    with memoryview(buffer) as view:
        while end - pos >= 4:
            (size,) = SIZE.unpack_from(buffer, pos)
            if size < 0 or size > max_bytes:
                too_large = size
                break
            if end - pos - 4 < size:
                break
            frames.append(bytes(view[pos + 4 : pos + 4 + size]))
            pos += 4 + size
    if pos:
        del buffer[:pos]  # the view is released: the buffer may shrink
    if too_large is not None:
        raise FrameTooLarge(f"a request of {too_large} bytes is over the {max_bytes}-byte limit")
    return frames


def frame_response(
    correlation_id: int, body: bytes, tail_bytes: int = 0, flexible: bool = False
) -> bytes:
    """The start of a response frame: size, correlation id (response header v0;
    v1 when ``flexible``: an empty set of tagged fields follows) and ``body``;
    ``tail_bytes`` more follow it (a Fetch answer's records, sent as they
    are: see :func:`encode_response_split`)."""
    if flexible:
        return _RESPONSE_PREFIX.pack(len(body) + tail_bytes + 5, correlation_id) + b"\0" + body
    return _RESPONSE_PREFIX.pack(len(body) + tail_bytes + 4, correlation_id) + body


# ------------------------------------------------------------------ bodies


@cache
def request_reader(api_key: int, version: int) -> Callable[[bytes, int], tuple[Any, int]]:
    """kio's decoder of one request version: ``reader(frame, offset) -> (request, size)``."""
    return entity_reader(load_request_schema(api_key, version))


def decode_request(api_key: int, version: int, frame: bytes, offset: int) -> Any:
    """The request body at ``offset`` of ``frame``, decoded by kio and checked for nulls.

    kio reads an array length of -1 as None even where the schema does not
    allow a null array (Produce's ``topic_data``, Fetch's ``topics`` ...);
    handlers would then fail iterating it. Such a request is as malformed as
    one kio refuses, so it raises :class:`MalformedRequest` instead; so does
    one naming more than :data:`MAX_REQUEST_ENTRIES` entries. A body over
    :data:`COUNT_BEFORE_DECODING` bytes has its entries counted on the bytes
    first (``kafka/entries.py``): kio builds an object per entry, and a 10 MB
    request of 5,000,000 entries held every client up for 8.4 s while it did.
    So does every flexible request: kio's native reader reserves memory for a
    compact array's claimed length before reading it, and a 56-byte request
    claiming 2**32 - 2 entries aborted the server (a failed 32 GiB allocation).
    """
    if len(frame) - offset > COUNT_BEFORE_DECODING or is_flexible(api_key, version):
        try:
            count_entries(load_request_schema(api_key, version), frame, offset, MAX_REQUEST_ENTRIES)
        except TooManyEntries:
            raise MalformedRequest(_too_many()) from None
        except Overrun:
            raise MalformedRequest("a length runs past the end of the request") from None
    request, _ = request_reader(api_key, version)(frame, offset)
    if _check_entity(request, MAX_REQUEST_ENTRIES) < 0:
        raise MalformedRequest(_too_many())
    return request


def _too_many() -> str:
    return (
        f"the request names more than {MAX_REQUEST_ENTRIES} entries (topics, partitions, groups...)"
    )


@cache
def _entity_fields(cls: type) -> tuple[tuple[str, bool], ...]:
    """``(name, required)`` for the fields of the kio entity ``cls`` that need a
    look: required ones (their schema does not allow null) and arrays."""
    found = []
    for f in fields(cls):
        args = get_args(f.type)
        required = NoneType not in args
        if required or any(get_origin(arg) is tuple for arg in args):
            found.append((f.name, required))
    return tuple(found)


def _check_entity(entity: Any, budget: int) -> int:
    """Check ``entity``'s required fields for nulls; return ``budget`` less the
    elements of every array in it (negative: over :data:`MAX_REQUEST_ENTRIES`,
    and the walk stops there)."""
    cls: type = type(entity)
    for name, required in _entity_fields(cls):
        value = getattr(entity, name)
        if value is None:
            if required:
                raise MalformedRequest(f"{cls.__name__}.{name} is null, which is not allowed")
        elif isinstance(value, tuple):
            budget -= len(value)
            if budget < 0:
                return budget
            for item in value:
                if hasattr(item, "__dataclass_fields__"):
                    budget = _check_entity(item, budget)
                    if budget < 0:
                        return budget
    return budget


@cache
def response_class(api_key: int, version: int) -> Any:
    return load_response_schema(api_key, version)


def decode_response(api_key: int, version: int, body: bytes) -> Any:
    """A response body decoded by kio (to amend an answer already encoded)."""
    response, _ = entity_reader(response_class(api_key, version))(body, 0)
    return response


@cache
def _response_writer(cls: Any) -> Callable[[io.BytesIO, Any], None]:
    return entity_writer(cls)


def encode_response(response: Any) -> bytes:
    """The body bytes of a kio response object."""
    buffer = io.BytesIO()
    cls: Any = type(response)
    _response_writer(cls)(buffer, response)
    return buffer.getvalue()


#: Fetch, whose answers carry the records: up to the fetch's ``max_bytes``.
_FETCH: Final = 1


class RecordParts(tuple[bytes, ...]):
    """A Fetch partition's records as the buffers they were read as (stored
    batches, packed runs), in order: their concatenation is the record set.

    The Fetch handler puts this in a partition's ``records`` instead of
    joining the buffers: a one-partition answer's records are then sent as
    they are (:func:`encode_response_split`), and joined only once, with the
    rest of the output (``KafkaSession.data_to_send``). Any other answer
    has them joined before kio's writer sees them.
    """

    __slots__ = ()

    @property
    def size(self) -> int:
        return sum(map(len, self))


def record_bytes(records: bytes | RecordParts | None) -> int:
    """Bytes of a partition's record set, joined or not."""
    if isinstance(records, RecordParts):
        return records.size
    return len(records or b"")


def encode_response_split(response: Any) -> tuple[bytes, tuple[bytes, ...]]:
    """A response's body as ``(head, records)``: the body is ``head`` followed by
    the buffers of ``records``.

    A Fetch answer of one partition (what a consumer of one partition asks)
    ends with that partition's records (v4-11: they are the last field of
    the last entity). Its head is encoded with empty records and their
    length patched in, so the records, up to megabytes, are not copied
    through kio's writer, nor joined (a :class:`RecordParts` stays in its
    parts); they are joined with the head once, when the output is sent.
    Any other answer is ``(body, ())``.
    """
    if response.__api_key__ == _FETCH:
        if len(response.responses) == 1:
            topic = response.responses[0]
            if len(topic.partitions) == 1 and topic.partitions[0].records:
                part = topic.partitions[0]
                records = part.records
                parts = records if isinstance(records, RecordParts) else (records,)
                bare = replace(topic, partitions=(replace(part, records=b""),))
                head = encode_response(replace(response, responses=(bare,)))
                return head[:-4] + SIZE.pack(record_bytes(records)), parts
        response = _joined(response)
    return encode_response(response), ()


def _joined(response: Any) -> Any:
    """A Fetch answer with every :class:`RecordParts` joined, for kio's writer."""
    if not any(
        isinstance(part.records, RecordParts)
        for topic in response.responses
        for part in topic.partitions
    ):
        return response
    topics = tuple(
        replace(
            topic,
            partitions=tuple(
                replace(part, records=b"".join(part.records))
                if isinstance(part.records, RecordParts)
                else part
                for part in topic.partitions
            ),
        )
        for topic in response.responses
    )
    return replace(response, responses=topics)


@cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


def build(cls: type, **values: Any) -> Any:
    """Instantiate the kio dataclass ``cls`` from the fields it has in its version.

    Handlers describe a response once, with every field any version has;
    each version's class keeps only its own (``throttle_time`` appears in
    Metadata v3, ``log_start_offset`` in Fetch v5 ...), so one handler
    serves a whole version range.
    """
    names = _field_names(cls)
    return cls(**{name: value for name, value in values.items() if name in names})


def response_classes(api_key: int, version: int, *names: str) -> tuple[Any, ...]:
    """A response class and the nested classes ``names`` of the same version."""
    cls = response_class(api_key, version)
    return (cls, *(nested(cls, name) for name in names))


def nested(response_cls: type, name: str) -> type:
    """The nested entity class ``name`` of the same version as ``response_cls``."""
    found: type = getattr(sys.modules[response_cls.__module__], name)
    return found
