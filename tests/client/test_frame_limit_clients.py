"""The Python clients accept frames up to the limit the broker advertises in hello.

Every client starts with a 16 MiB decoder limit (``DEFAULT_MAX_FRAME_BYTES``).
A broker started with a bigger ``--max-frame-bytes`` may send frames up to
its own limit, so after hello each client raises its limit to the
advertised one (never lowers it): a 17 MiB read answer then arrives instead
of killing the connection with ``too_large``. The shared sans-I/O
``ClientProtocol`` does it, so it is tested once directly and once through
each client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from client_facades import opener_for

from minibroker.client.protocol import Call, ClientProtocol, Reply, hello_call
from minibroker.config import ServerConfig
from minibroker.errors import BrokerError, TooLarge
from minibroker.protocol.codec import DEFAULT_MAX_FRAME_BYTES, FrameTooLarge, pack_frame

BIG_LIMIT = 32 * 1024 * 1024
MIB = 1024 * 1024


def hello_reply(request_id: int, limits: Any) -> bytes:
    return pack_frame({"op": "ok", "id": request_id, "result": {"limits": limits}})


def big_frame(request_id: int) -> bytes:
    """An answer just above the default limit."""
    return pack_frame({"op": "ok", "id": request_id, "result": b"x" * DEFAULT_MAX_FRAME_BYTES})


def test_the_hello_answer_raises_the_limit_before_the_next_frame_is_decoded() -> None:
    protocol = ClientProtocol()
    hello_id, _ = protocol.encode(hello_call("test", None, None))
    request_id, _ = protocol.encode(Call("ping", {}))
    # The hello answer and a big frame in one chunk: the limit applies in between.
    events = protocol.receive_data(
        hello_reply(hello_id, {"max_frame_bytes": BIG_LIMIT}) + big_frame(request_id)
    )
    assert [type(e) for e in events] == [Reply, Reply]
    assert protocol.max_frame_bytes == BIG_LIMIT


@pytest.mark.parametrize(
    "limits",
    [
        {"max_frame_bytes": 1024},  # smaller than ours: ours stays
        {"max_frame_bytes": "big"},
        {"max_frame_bytes": None},
        {},
        None,
        [1, 2],
    ],
)
def test_a_smaller_or_malformed_advertised_limit_keeps_the_clients_own(limits: Any) -> None:
    protocol = ClientProtocol()
    hello_id, _ = protocol.encode(hello_call("test", None, None))
    protocol.receive_data(hello_reply(hello_id, limits))
    assert protocol.max_frame_bytes == DEFAULT_MAX_FRAME_BYTES


def test_only_the_hello_answer_can_raise_the_limit() -> None:
    protocol = ClientProtocol()
    hello_id, _ = protocol.encode(hello_call("test", None, None))
    protocol.receive_data(hello_reply(hello_id, {"max_frame_bytes": 4096}))
    # A later answer that happens to look like server info changes nothing.
    protocol.receive_data(hello_reply(hello_id + 1, {"max_frame_bytes": BIG_LIMIT}))
    assert protocol.max_frame_bytes == DEFAULT_MAX_FRAME_BYTES
    with pytest.raises(FrameTooLarge):
        protocol.receive_data(big_frame(hello_id + 2))


@pytest.fixture
async def big_frame_opener(client_kind: str, asyncio_loop: Any) -> AsyncIterator[Any]:
    """Clients of this kind to a broker advertising 32 MiB frames."""
    config = ServerConfig(port=0, max_frame_bytes=BIG_LIMIT)
    async with opener_for(client_kind, config, asyncio_loop) as opener:
        yield opener


async def test_a_read_answer_above_the_default_limit_arrives_whole(big_frame_opener: Any) -> None:
    async with big_frame_opener(namespace="bigframes") as mb:
        await mb.call("create_log", "big")
        bodies = [i.to_bytes(4, "big") + b"r" * (MIB - 4) for i in range(17)]
        for start in range(0, len(bodies), 6):
            await mb.call("append_many", "big", bodies[start : start + 6])
        try:
            records = await mb.call("read", "big", start=0, max_records=100, max_bytes=24 * MIB)
        except BrokerError as exc:  # pragma: no cover - the failure this test guards
            raise AssertionError(f"the 17 MiB answer was refused: {exc}") from exc
        assert [r.body for r in records] == bodies
        assert await mb.call("ping", b"after") == b"after"


SMALL_LIMIT = 64 * 1024


@pytest.fixture
async def small_frame_opener(client_kind: str, asyncio_loop: Any) -> AsyncIterator[Any]:
    """Clients of this kind to a broker that accepts frames of 64 KiB at most."""
    config = ServerConfig(port=0, max_frame_bytes=SMALL_LIMIT)
    async with opener_for(client_kind, config, asyncio_loop) as opener:
        yield opener


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("put", ("jobs", b"x" * (SMALL_LIMIT + 1))),
        ("put_many", ("jobs", [b"x" * 1024] * 70)),
        ("publish", ("news", b"x" * (SMALL_LIMIT + 1))),
        ("append", ("events", b"x" * (SMALL_LIMIT + 1))),
        ("request", ("svc", b"x" * (SMALL_LIMIT + 1))),
    ],
)
async def test_a_request_above_the_brokers_frame_limit_fails_alone(
    small_frame_opener: Any, method: str, args: tuple[Any, ...]
) -> None:
    """The client knows the limit from hello: it raises TooLarge without
    sending, and the connection (and everything on it) carries on."""
    async with small_frame_opener(namespace="toolarge") as mb:
        await mb.call("declare_queue", "jobs")
        await mb.call("create_log", "events")
        with pytest.raises(TooLarge) as refused:
            await mb.call(method, *args)
        assert refused.value.details["limit"] == SMALL_LIMIT
        assert "nothing was sent" in str(refused.value)
        assert not mb.closed
        assert await mb.call("ping", b"still here") == b"still here"
        await mb.call("put", "jobs", b"small")
        [delivery] = await mb.call("fetch", "jobs")
        assert delivery.body == b"small"
