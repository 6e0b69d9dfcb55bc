"""Partial frames across connections: one server-wide budget (server/input_budget.py).

Each connection here sends the first part of a large frame and stops. The
server claims each started frame whole; once the budget is taken, the next
connections read nothing more (after hello) or are refused (before hello),
a completed frame makes room for a waiting one, and closing frees it all.
In-process streams make "the server has read all it will read" exact
(``wait_all_tasks_blocked``), with the same Connection as TCP.
"""

from __future__ import annotations

import gc
import struct
import tracemalloc

import pytest
import trio
import trio.testing
from raw_wire import RawClient, StartServer, ping

from minibroker.protocol.codec import HEADER_SIZE, pack_frame
from minibroker.protocol.frames import PROTOCOL_VERSION
from minibroker.server import app
from minibroker.server.app import BrokerServer
from minibroker.server.connection import READ_CHUNK
from minibroker.server.input_budget import InputBudget

KiB = 1024


async def connect(server: BrokerServer, *, say_hello: bool = True) -> RawClient:
    client = RawClient(server.open_in_process_stream())
    if say_hello:
        await client.handshake()
    return client


def big_ping(request_id: int, size: int) -> bytes:
    """A ping frame of ``size`` bytes with its length prefix."""
    overhead = len(pack_frame(ping(request_id, b""))) - HEADER_SIZE + 3  # bin 8 -> bin 32 header
    frame = pack_frame(ping(request_id, b"x" * (size - overhead)))
    assert len(frame) - HEADER_SIZE == size
    return frame


def buffered(server: BrokerServer) -> list[int]:
    return [session.buffered_input_bytes for session in server.sessions.values()]


async def test_started_frames_past_the_budget_wait_then_go_through(
    start_server: StartServer,
) -> None:
    size = 256 * KiB
    budget = 2 * size
    server = await start_server(partial_frame_budget=budget)
    clients = [await connect(server) for _ in range(4)]
    frames = [big_ping(2, size) for _ in clients]
    half = size // 2
    for client, frame in zip(clients, frames, strict=True):
        await client.send_bytes(frame[:half])
    await trio.testing.wait_all_tasks_blocked()
    # Two frames are claimed whole; the other two connections read one chunk and wait.
    assert sorted(buffered(server)) == [READ_CHUNK, READ_CHUNK, half, half]
    assert server.input_budget.held == 2 * (size + HEADER_SIZE)
    assert server.input_budget.waiting_bytes == 2 * READ_CHUNK

    # Finishing a claimed frame answers it and lets a waiting connection go on.
    first = next(c for c, b in zip(clients, buffered(server), strict=True) if b == half)
    await first.send_bytes(frames[clients.index(first)][half:])
    assert (await first.receive_one())["id"] == 2
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(buffered(server)) == [0, READ_CHUNK, half, half]

    rest = [c for c in clients if c is not first]
    for client in rest:
        await client.send_bytes(frames[clients.index(client)][half:])
    for client in rest:
        reply = await client.receive_one()
        assert (reply["op"], reply["id"]) == ("ok", 2)
        assert reply["result"] == b"x" * len(reply["result"])
        assert len(reply["result"]) > size - 64
    await trio.testing.wait_all_tasks_blocked()
    assert server.input_budget.held == 0
    assert buffered(server) == [0, 0, 0, 0]


async def test_before_hello_a_connection_past_the_budget_is_refused(
    start_server: StartServer,
) -> None:
    size = 60 * KiB
    server = await start_server(partial_frame_budget=484 * KiB)
    first = {"op": "hello", "id": 1, "version": PROTOCOL_VERSION, "client": "raw"}
    first["token"] = "t" * (size - len(pack_frame({**first, "token": ""})) + HEADER_SIZE - 2)
    frame = pack_frame(first)
    clients = [await connect(server, say_hello=False) for _ in range(3)]
    for client in clients:
        await client.send_bytes(frame[: 10 * KiB])
    await trio.testing.wait_all_tasks_blocked()
    # Two claims (60 KiB each) exhaust the pre-hello share, a quarter of 484 KiB;
    # the third is refused, not parked.
    *admitted, refused = clients
    (bye,) = await refused.receive_until_eof()
    assert (bye["op"], bye["code"]) == ("bye", "limit_exceeded")
    assert "(495616 bytes, 123904 of them for connections" in bye["message"]
    assert server.input_budget.refused == 1
    for client in admitted:
        await client.send_bytes(frame[10 * KiB :])
        assert (await client.receive_one())["op"] == "ok"
    await trio.testing.wait_all_tasks_blocked()
    assert server.input_budget.held == 0


@pytest.mark.usefixtures("traced_memory")
async def test_many_connections_with_partial_frames_stay_bounded_and_free_on_close(
    start_server: StartServer,
) -> None:
    size = 1024 * KiB
    budget = 8 * size
    server = await start_server(partial_frame_budget=budget)
    clients = [await connect(server) for _ in range(100)]
    before, _ = tracemalloc.get_traced_memory()
    frame = big_ping(2, size)
    for client in clients:
        await client.send_bytes(frame[: size // 2])
    await trio.testing.wait_all_tasks_blocked()
    held = buffered(server)
    waiting = sum(1 for b in held if b <= READ_CHUNK)
    assert waiting >= 90
    # Without the budget: 100 half frames, 50 MiB. With it: 8 claims of 1 MiB
    # (half of each arrived) plus one chunk per waiting connection.
    # (What the waiting connections did not read stays in their streams: for
    # TCP, in the kernel's socket buffers, which push back on the clients.)
    assert sum(held) <= 8 * (size // 2) + waiting * READ_CHUNK

    for client in clients:
        await client.aclose()
    del clients  # and with them the unread rest of their frames
    await trio.testing.wait_all_tasks_blocked()
    assert not server.sessions
    assert (server.input_budget.held, server.input_budget.waiting_bytes) == (0, 0)
    gc.collect()
    after, _ = tracemalloc.get_traced_memory()
    assert after - before < 2 * size


async def test_connections_waiting_for_room_never_block_each_other(
    start_server: StartServer,
) -> None:
    """Nine waiters hold a chunk each, together far past the budget; all still finish."""
    size = 256 * KiB
    server = await start_server(partial_frame_budget=128 * KiB)
    clients = [await connect(server) for _ in range(10)]
    frame = big_ping(2, size)
    for client in clients:
        await client.send_bytes(frame[: 100 * KiB])
    await trio.testing.wait_all_tasks_blocked()
    assert server.input_budget.waiting_bytes == 9 * READ_CHUNK
    with trio.fail_after(30):
        for client in clients:
            await client.send_bytes(frame[100 * KiB :])
        for client in clients:
            assert (await client.receive_one())["id"] == 2
    assert server.input_budget.held == 0


def test_a_drained_budget_reports_once_per_burst_above_its_threshold() -> None:
    drained: list[int] = []
    budget = InputBudget(10_000, on_drained=lambda: drained.append(1), drained_after=1000)
    assert budget.claim(0, 600) and budget.claim(0, 600)
    budget.release(600)
    assert drained == []  # claims remain
    budget.release(600)
    assert drained == [1]  # peak 1200 >= 1000, now nothing held
    assert budget.claim(0, 500)
    budget.release(500)
    assert drained == [1]  # a small burst after the drain does not count


async def test_the_server_returns_freed_memory_after_stalled_connections_close(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Partial frames are small heap blocks glibc keeps after free: the server
    # trims the heap when the partial-frame budget drains after a burst, so the
    # RSS a slowloris raised comes back down.
    trims: list[int] = []
    monkeypatch.setattr(app, "return_free_memory", lambda: trims.append(1) or True)
    size = 256 * KiB
    server = await start_server()
    server.input_budget.drained_after = 4 * size
    clients = [await connect(server) for _ in range(8)]
    for client in clients:
        await client.send_bytes(big_ping(2, size)[: size // 2])
    await trio.testing.wait_all_tasks_blocked()
    assert server.input_budget.held >= 4 * size and trims == []
    for client in clients:
        await client.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert server.input_budget.held == 0
    assert trims == [1]


def long_hello(size: int, **fields: object) -> bytes:
    """A hello frame of about ``size`` bytes (its token padded), with its length prefix."""
    first = {"op": "hello", "id": 1, "version": PROTOCOL_VERSION, "client": "raw", **fields}
    first["token"] = "t" * (size - len(pack_frame({**first, "token": ""})) + HEADER_SIZE - 2)
    return pack_frame(first)


async def test_connections_before_hello_cannot_take_the_budget_from_authenticated_ones(
    start_server: StartServer,
) -> None:
    """Unauthenticated connections claim from a quarter of the budget only.

    Before, six of them each sending the start of a 60 KiB hello held the
    whole 256 KiB budget, and a client that had said hello waited with its
    large frame until they left (their hello timeout, then they reconnect).
    """
    server = await start_server(partial_frame_budget=256 * KiB, tokens={"secret": "alice"})
    legit = await connect(server, say_hello=False)
    await legit.handshake(token="secret")
    attackers = [await connect(server, say_hello=False) for _ in range(6)]
    start = long_hello(60 * KiB)[: 10 * KiB]
    for attacker in attackers:
        await attacker.send_bytes(start)
    await trio.testing.wait_all_tasks_blocked()
    budget = server.input_budget
    await legit.send_bytes(big_ping(2, 150 * KiB))
    await trio.testing.wait_all_tasks_blocked()
    assert budget.paused == 0  # it never waited
    assert (await legit.receive_one())["id"] == 2

    # One 60 KiB claim fits the 64 KiB share; the other five are refused, not parked.
    assert budget.pre_auth_held == budget.held == 60 * KiB + HEADER_SIZE
    assert budget.refused == 5
    for attacker in attackers[1:]:
        (bye,) = await attacker.receive_until_eof()
        assert (bye["op"], bye["code"]) == ("bye", "limit_exceeded")
        assert "65536 of them for connections that have not completed" in bye["message"]


async def test_a_claim_made_before_hello_moves_out_of_the_pre_auth_share_after_it(
    start_server: StartServer,
) -> None:
    server = await start_server(partial_frame_budget=256 * KiB)
    client = await connect(server, say_hello=False)
    frame = long_hello(30 * KiB)
    await client.send_bytes(frame[: 10 * KiB])
    await trio.testing.wait_all_tasks_blocked()
    budget = server.input_budget
    assert budget.pre_auth_held == budget.held == 30 * KiB + HEADER_SIZE
    ping_frame = big_ping(2, 100 * KiB)
    await client.send_bytes(frame[10 * KiB :] + ping_frame[: 10 * KiB])
    assert (await client.receive_one())["op"] == "ok"
    await trio.testing.wait_all_tasks_blocked()
    assert (budget.pre_auth_held, budget.held) == (0, 100 * KiB + HEADER_SIZE)
    await client.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert (budget.pre_auth_held, budget.held) == (0, 0)


def test_claims_before_the_handshake_stay_within_a_quarter_of_the_budget() -> None:
    budget = InputBudget(4000)
    assert budget.pre_auth_limit == 1000
    assert budget.claim(0, 600, pre_auth=True)
    assert not budget.claim(0, 600, pre_auth=True)  # no overshoot before the handshake
    assert budget.claim(0, 400, pre_auth=True)
    assert budget.claim(0, 3000)  # authenticated claims have the rest
    assert budget.claim(600, 100, pre_auth=True)  # shrinking is always granted
    assert (budget.held, budget.pre_auth_held) == (3500, 500)
    budget.release(100, pre_auth=True)
    budget.release(400, pre_auth=True)
    budget.release(3000)
    assert (budget.held, budget.pre_auth_held) == (0, 0)


async def test_unauthenticated_kafka_size_prefixes_do_not_stall_authenticated_clients(
    start_server: StartServer,
) -> None:
    """Two Kafka connections that have not logged in each declare a 200 KiB
    request and send nothing more. Before, they held the whole 256 KiB
    budget (a claim may overshoot), and a native client that had said hello
    waited with its next large frame until they left; now they are refused."""
    server = await start_server(
        partial_frame_budget=256 * KiB, tokens={"secret": "alice"}, kafka_port=0
    )
    legit = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await legit.handshake(token="secret")
    attackers = []
    for _ in range(2):
        attacker = await trio.open_tcp_stream("127.0.0.1", server.front_end_ports["kafka"])
        await attacker.send_all(struct.pack(">i", 200 * KiB) + b"x" * 100)
        attackers.append(attacker)
    await trio.testing.wait_all_tasks_blocked()
    await legit.send_bytes(big_ping(2, 150 * KiB))
    await trio.testing.wait_all_tasks_blocked()
    assert server.input_budget.paused == 0  # it never waited
    assert (await legit.receive_one())["id"] == 2
    assert server.input_budget.held == 0
    for attacker in attackers:
        assert await attacker.receive_some(1) == b""  # closed, as Kafka closes: no answer
