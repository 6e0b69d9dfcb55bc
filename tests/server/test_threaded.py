"""``minibroker.testing.run_in_thread``: a real TCP server for code that is not Trio."""

from __future__ import annotations

import socket

from minibroker.config import ServerConfig
from minibroker.protocol.codec import RawFrameDecoder, pack_frame
from minibroker.protocol.frames import PROTOCOL_VERSION
from minibroker.testing import run_in_thread


def blocking_exchange(port: int, *frames: dict[str, object]) -> list[dict[str, object]]:
    """Send frames over a plain blocking socket and read one answer per frame."""
    decoder = RawFrameDecoder()
    received: list[dict[str, object]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"".join(pack_frame(f) for f in frames))
        while len(received) < len(frames):
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            decoder.receive_data(data)
            received.extend(decoder.values())
    return received


def test_run_in_thread_serves_until_the_block_ends() -> None:
    with run_in_thread() as broker:
        assert broker.url == f"minibroker://127.0.0.1:{broker.port}"
        assert broker.url_for("ns1") == f"{broker.url}?namespace=ns1"
        replies = blocking_exchange(
            broker.port,
            {"op": "hello", "id": 1, "version": PROTOCOL_VERSION, "namespace": "ns1"},
            {"op": "ping", "id": 2, "data": b"sync"},
        )
        assert replies[0]["op"] == "ok"
        assert replies[1] == {"op": "ok", "id": 2, "result": b"sync"}
        port = broker.port
    assert broker.server.stopped.is_set()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        pass
    else:  # pragma: no cover
        raise AssertionError("still listening after the block")


def test_run_in_thread_takes_overrides() -> None:
    with run_in_thread(ServerConfig(port=0), max_frame_bytes=1234) as broker:
        replies = blocking_exchange(
            broker.port, {"op": "hello", "id": 1, "version": PROTOCOL_VERSION}
        )
        assert replies[0]["result"]["limits"]["max_frame_bytes"] == 1234  # type: ignore[index]


def test_advance_moves_the_server_clock() -> None:
    with run_in_thread() as broker:
        before = broker.clock.current_time()
        broker.advance(3600)
        assert broker.clock.current_time() >= before + 3600
