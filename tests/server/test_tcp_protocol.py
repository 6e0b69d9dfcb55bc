"""The protocol over real TCP: handshake, refusals, hostile input, vanishing clients.

Each test that breaks a connection checks the other half of the contract
too: the broker is unaffected, so a second client still works and the
broken connection's session is gone.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
import trio
import trio.testing
from raw_wire import RawClient, StartServer, hello, ping

import minibroker
from minibroker import __version__
from minibroker.errors import TooLarge, Unauthorized
from minibroker.protocol.codec import pack_frame
from minibroker.protocol.frames import PROTOCOL_VERSION
from minibroker.server.app import BrokerServer


def url(server: BrokerServer) -> str:
    return f"minibroker://127.0.0.1:{server.port}"


async def assert_healthy(server: BrokerServer) -> None:
    """A fresh client can still say hello and ping; no broken session lingers."""
    async with minibroker.connect(url(server)) as mb:
        assert await mb.ping(b"still here") == b"still here"
    await assert_sessions_cleaned_up(server)


async def assert_sessions_cleaned_up(server: BrokerServer) -> None:
    # Closing is asynchronous on the server side; once every task is blocked
    # (no I/O in flight on loopback), all connection tasks have finished.
    await trio.testing.wait_all_tasks_blocked()
    assert server.sessions == {}


async def test_handshake_with_the_trio_client(server: BrokerServer) -> None:
    async with minibroker.connect(url(server), client_name="handshake-test") as mb:
        info = mb.server_info
        assert info["server"] == "minibroker"
        assert info["version"] == __version__
        assert info["protocol"] == PROTOCOL_VERSION
        assert info["namespace"] == ""
        assert info["limits"]["max_frame_bytes"] == server.config.max_frame_bytes
        assert await mb.ping(b"x") == b"x"
        (session,) = server.sessions.values()
        assert session.client_name == "handshake-test"
        assert session.peer_name.startswith("127.0.0.1:")
    await assert_sessions_cleaned_up(server)


async def test_raw_handshake_and_pipelined_pings(server: BrokerServer) -> None:
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await client.send(hello(), *(ping(i, bytes([i])) for i in range(2, 102)))
    replies = await client.receive(101)
    assert [r["id"] for r in replies] == list(range(1, 102))
    assert all(r["op"] == "ok" for r in replies)
    assert replies[5]["result"] == bytes([6])
    await client.aclose()
    await assert_sessions_cleaned_up(server)


async def test_wrong_version(server: BrokerServer) -> None:
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await client.send(hello(version=PROTOCOL_VERSION + 1), ping(2))
    frames = await client.receive_until_eof()
    assert len(frames) == 1
    assert frames[0]["op"] == "error"
    assert frames[0]["id"] == 1
    assert frames[0]["code"] == "unsupported_version"
    assert frames[0]["details"] == {"supported": [PROTOCOL_VERSION]}
    await client.aclose()
    await assert_healthy(server)


async def test_bad_token(start_server: StartServer) -> None:
    server = await start_server(tokens={"s3cret": "ci"})
    cases: list[dict[str, Any]] = [{}, {"token": "guess"}]
    for fields in cases:
        client = await RawClient.connect(server.port)  # type: ignore[arg-type]
        await client.send(hello(**fields), ping(2))
        frames = await client.receive_until_eof()
        assert [(f["op"], f["id"], f["code"]) for f in frames] == [("error", 1, "unauthorized")]
        await client.aclose()

    with pytest.raises(Unauthorized):
        async with minibroker.connect(url(server), token="guess"):
            pass  # pragma: no cover
    async with minibroker.connect(url(server), token="s3cret") as mb:
        assert await mb.ping() is None
    async with minibroker.connect(f"minibroker://s3cret@127.0.0.1:{server.port}") as mb:
        assert await mb.ping(b"url token") == b"url token"
    await assert_sessions_cleaned_up(server)


async def test_request_before_hello(server: BrokerServer) -> None:
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await client.send(ping(1))
    reply = await client.receive_one()
    assert (reply["op"], reply["id"], reply["code"]) == ("error", 1, "unauthorized")
    await client.handshake()
    await client.send(ping(3))
    assert await client.receive_one() == {"op": "ok", "id": 3, "result": None}
    await client.aclose()


async def test_bad_request_keeps_the_connection(server: BrokerServer) -> None:
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await client.handshake()
    await client.send({"op": "ping", "id": 2, "data": 5}, {"op": "warp", "id": 3}, ping(4))
    replies = await client.receive(3)
    assert [(r["id"], r.get("code")) for r in replies] == [
        (2, "bad_request"),
        (3, "unknown_op"),
        (4, None),
    ]
    await client.aclose()


@pytest.mark.parametrize("send_body", [False, True], ids=["prefix-only", "with-body"])
async def test_oversized_frame(start_server: StartServer, send_body: bool) -> None:
    server = await start_server(max_frame_bytes=4096)
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await client.handshake()
    # Announce a 1 MB frame. Without a body, the refusal proves the server
    # judged the prefix alone; with one, the body is never needed either.
    await client.send_bytes(struct.pack(">I", 1_000_000))
    if send_body:
        with trio.move_on_after(5):  # the server may stop reading: don't insist
            await client.send_bytes(b"\x00" * 200_000)
    frames = await client.receive_until_eof()
    assert len(frames) == 1
    error = frames[0]
    assert error["op"] == "error"
    assert "id" not in error
    assert error["code"] == "too_large"
    assert error["details"] == {"limit": 4096}
    assert "1000000" in error["message"]
    await client.aclose()
    await assert_healthy(server)
    assert server.stats.errors["too_large"] == 1


async def test_a_frame_at_the_limit_is_fine(start_server: StartServer) -> None:
    server = await start_server(max_frame_bytes=4096)
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await client.handshake()
    frame = pack_frame(ping(2, b""))
    overhead = len(frame) - 4 + 3  # bin 16 header for a 256..65535-byte payload
    await client.send(ping(2, b"y" * (4096 - overhead)))
    reply = await client.receive_one()
    assert reply["op"] == "ok"
    await client.aclose()


@pytest.mark.parametrize(
    ("garbage", "code"),
    [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "too_large"),
        (struct.pack(">I", 4) + b"\xc1\xc1\xc1\xc1", "bad_frame"),
        (struct.pack(">I", 1) + b"\x07", "bad_frame"),  # a frame that is not a map
    ],
    ids=["http", "not-msgpack", "not-a-map"],
)
async def test_garbage_bytes(server: BrokerServer, garbage: bytes, code: str) -> None:
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await client.handshake()
    await client.send_bytes(garbage + pack_frame(ping(2)))
    frames = await client.receive_until_eof()
    assert [(f["op"], f.get("id"), f["code"]) for f in frames] == [("error", None, code)]
    await client.aclose()
    await assert_healthy(server)


async def test_garbage_before_hello(server: BrokerServer) -> None:
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await client.send_bytes(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a TLS hello
    frames = await client.receive_until_eof()
    assert frames[0]["code"] == "too_large"
    await client.aclose()
    await assert_healthy(server)


async def test_client_vanishing_mid_frame(server: BrokerServer) -> None:
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await client.handshake()
    data = pack_frame(ping(2, b"z" * 100_000))
    await client.send_bytes(data[: len(data) // 2])
    client.reset()
    await assert_healthy(server)


async def test_client_vanishing_mid_request(server: BrokerServer) -> None:
    """Requests whose answers can no longer be delivered: the server shrugs."""
    for _ in range(3):
        client = await RawClient.connect(server.port)  # type: ignore[arg-type]
        await client.handshake()
        # 600 KB of answers the client will never read (below the server's
        # 1 MiB high-water mark, so this send cannot block on backpressure).
        await client.send(*(ping(i, b"r" * 20_000) for i in range(2, 32)))
        client.reset()
    await assert_healthy(server)


async def test_client_closing_politely_mid_request(server: BrokerServer) -> None:
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await client.handshake()
    await client.send(*(ping(i, b"q" * 10_000) for i in range(2, 50)))
    await client.aclose()
    await assert_healthy(server)


async def test_half_close_still_gets_answers(server: BrokerServer) -> None:
    """A client that sends its requests then shuts down its sending side
    (``printf ... | nc``) still receives every answer before the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)  # type: ignore[arg-type]
    client = RawClient(stream)
    await client.send(hello(), *(ping(i) for i in range(2, 12)))
    await stream.send_eof()
    frames = await client.receive_until_eof()
    assert [f["id"] for f in frames] == list(range(1, 12))
    await client.aclose()
    await assert_sessions_cleaned_up(server)


async def test_trio_client_refuses_an_oversized_frame_itself(start_server: StartServer) -> None:
    """The client knows the limit from hello: it raises TooLarge unsent and
    keeps its connection (the raw-wire tests above cover the server's refusal)."""
    server = await start_server(max_frame_bytes=1024)
    async with minibroker.connect(url(server)) as mb:
        with pytest.raises(TooLarge, match="nothing was sent"):
            await mb.ping(b"p" * 5000)
        assert await mb.ping(b"still connected") == b"still connected"
    await assert_healthy(server)
