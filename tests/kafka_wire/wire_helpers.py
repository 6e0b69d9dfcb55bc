"""Speak Kafka to a ``KafkaSession`` directly (no socket): requests built with kio."""

from __future__ import annotations

import io
import struct
from datetime import timedelta
from typing import Any

import trio
from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

from minibroker.core.broker import Broker
from minibroker.kafka import wire
from minibroker.kafka.service import KafkaService, KafkaSettings
from minibroker.kafka.session import KafkaSession
from minibroker.storage.memory import MemoryLog

PORT = 9092


def open_session(broker: Broker | None = None, **settings: Any) -> KafkaSession:
    broker = broker or Broker(memory_log=MemoryLog)
    service = KafkaService(broker, KafkaSettings(**settings), lambda: PORT)
    return service.make_session(broker, 1, "test")


def frame(
    api_key: int, version: int, body: bytes, correlation_id: int = 1, client_id: str = "t/c"
) -> bytes:
    encoded = client_id.encode()
    header = struct.pack(">hhih", api_key, version, correlation_id, len(encoded)) + encoded
    if wire.is_flexible(api_key, version):
        header += b"\0"  # request header v2: no tagged fields
    return struct.pack(">i", len(header) + len(body)) + header + body


def encode_request(api_key: int, version: int, **values: Any) -> bytes:
    cls = load_request_schema(api_key, version)
    buffer = io.BytesIO()
    entity_writer(cls)(buffer, wire.build(cls, **values))
    return buffer.getvalue()


def request_class(api_key: int, version: int, nested: str) -> type:
    return wire.nested(load_request_schema(api_key, version), nested)


def responses(session: KafkaSession) -> list[tuple[int, bytes]]:
    """Every response frame sent so far: ``(correlation id, body)``."""
    data = session.data_to_send()
    found = []
    pos = 0
    while pos < len(data):
        size, correlation_id = struct.unpack_from(">ii", data, pos)
        found.append((correlation_id, data[pos + 8 : pos + 4 + size]))
        pos += 4 + size
    return found


def call(
    session: KafkaSession, api_key: int, version: int, correlation_id: int = 1, **values: Any
) -> Any:
    """Send one request, return the decoded response (it must be answered at once)."""
    session.receive_data(
        frame(api_key, version, encode_request(api_key, version, **values), correlation_id)
    )
    [(got_id, body)] = responses(session)
    assert got_id == correlation_id
    if api_key != 18 and wire.is_flexible(api_key, version):
        assert body[0] == 0  # response header v1: no tagged fields
        body = body[1:]
    response, size = entity_reader(load_response_schema(api_key, version))(body, 0)
    assert size == len(body)
    return response


ONE_SECOND = timedelta(seconds=1)


async def answer_ids(stream: trio.SocketStream, count: int) -> list[int]:
    """Read ``count`` answers off ``stream``; their correlation ids, in order."""
    data = b""
    found: list[int] = []
    while len(found) < count:
        chunk = await stream.receive_some()
        assert chunk, "the server closed the connection"
        data += chunk
        while len(data) >= 8 and len(data) >= 4 + int.from_bytes(data[:4], "big"):
            size = int.from_bytes(data[:4], "big")
            found.append(int.from_bytes(data[4:8], "big", signed=True))
            data = data[4 + size :]
    return found
