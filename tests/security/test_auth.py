"""Token authentication: with tokens configured, nothing but hello works before it.

Every request op of the protocol is sent before hello and must be refused
with ``unauthorized``, changing nothing; a hello with a missing or wrong
token closes the connection, and nothing pipelined behind it runs; tokens are
compared with ``hmac.compare_digest``, against every configured token.
"""

from __future__ import annotations

import contextlib
import hmac

import pytest
import trio
from security_support import RawClient, StartServer, hello, sample_request

import minibroker
from minibroker.access import auth
from minibroker.errors import Unauthorized
from minibroker.protocol import frames
from minibroker.protocol.codec import InvalidFrame, decode_request

TOKENS = {"tok-ci-5b1d": "ci", "tok-ops-93aa": "ops"}
NOT_HELLO = sorted(op for op in frames.REQUESTS if op != "hello")


@pytest.mark.parametrize("op", sorted(frames.REQUESTS))
def test_every_sample_request_is_well_formed(op: str) -> None:
    """The samples pass the field checks, so their answers below come from auth."""
    decoded = decode_request(sample_request(op))
    assert not isinstance(decoded, InvalidFrame), decoded
    assert type(decoded) is frames.REQUESTS[op]


async def test_nothing_but_hello_works_before_authentication(serve: StartServer) -> None:
    server = await serve(tokens=TOKENS)
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    ids = {op: 100 + i for i, op in enumerate(NOT_HELLO)}
    await client.send(*(sample_request(op, request_id) for op, request_id in ids.items()))
    for op, request_id in ids.items():
        answer = await client.response(request_id)
        assert (answer["op"], answer["code"]) == ("error", "unauthorized"), (op, answer)
    # Nothing happened: no namespace was even opened.
    assert server.broker.namespaces == {}

    # The same connection can still authenticate, and then works.
    await client.send(hello(token="tok-ci-5b1d"))
    assert (await client.response(1))["op"] == "ok"
    await client.send(sample_request("queue.list", 2))
    assert (await client.response(2))["result"] == []
    await client.aclose()


@pytest.mark.parametrize(
    "token",
    [None, "", "wrong", "tok-ci-5b1", "tok-ci-5b1d ", "TOK-CI-5B1D", "tok-ci-5b1dX", "é" * 10_000],
)
async def test_a_bad_token_closes_the_connection_and_runs_nothing_after_it(
    serve: StartServer, token: str | None
) -> None:
    server = await serve(tokens=TOKENS)
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    fields = {} if token is None else {"token": token}
    # Pipelined in one chunk behind the bad hello: must never run.
    await client.send(
        hello(**fields),
        sample_request("queue.declare", 2, queue="sneaky"),
        sample_request("log.create", 3, log="sneaky"),
    )
    frames_ = await client.until_eof()
    assert [(f["op"], f.get("id"), f["code"]) for f in frames_] == [("error", 1, "unauthorized")]
    assert server.broker.namespaces == {}


async def test_a_second_hello_is_refused(serve: StartServer) -> None:
    server = await serve(tokens=TOKENS)
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await client.send(hello(token="tok-ops-93aa"))
    assert (await client.response(1))["op"] == "ok"
    await client.send(hello(2, token="tok-ci-5b1d"))
    answer = await client.response(2)
    assert answer["code"] == "unauthorized"
    await client.aclose()


async def test_clients_authenticate_with_a_token(serve: StartServer) -> None:
    server = await serve(tokens=TOKENS)
    async with minibroker.connect(f"minibroker://tok-ops-93aa@127.0.0.1:{server.port}") as mb:
        assert await mb.ping(b"in") == b"in"
        (session,) = server.sessions.values()
        assert session.principal is not None and session.principal.name == "ops"
    with pytest.raises(Unauthorized):
        async with minibroker.connect(f"minibroker://nope@127.0.0.1:{server.port}"):
            pass  # pragma: no cover


def test_tokens_are_compared_in_constant_time_against_every_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The comparison goes through hmac.compare_digest, and never stops at the
    first match or mismatch (which token matched must not show in the timing)."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    tokens = {f"token-{i}": f"p{i}" for i in range(5)}
    authenticator = auth.Authenticator(tokens)
    for given in ("token-0", "token-4", "token-9", "x"):
        calls.clear()
        with contextlib.suppress(Unauthorized):
            authenticator.authenticate(given)
        assert len(calls) == len(tokens), given
        assert {a for a, _ in calls} == {t.encode() for t in tokens}
        assert all(b == given.encode() for _, b in calls)


def test_without_tokens_everyone_is_anonymous() -> None:
    authenticator = auth.Authenticator()
    assert not authenticator.enabled
    assert authenticator.authenticate(None).name == "anonymous"
    assert authenticator.authenticate("anything").name == "anonymous"


async def test_auth_failures_do_not_disturb_other_clients(serve: StartServer) -> None:
    server = await serve(tokens=TOKENS)
    async with minibroker.connect(f"minibroker://tok-ci-5b1d@127.0.0.1:{server.port}") as mb:
        await mb.declare_queue("work")
        async with trio.open_nursery() as nursery:
            for i in range(50):

                async def intruder(i: int = i) -> None:
                    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
                    await client.send(hello(token=f"guess-{i}"))
                    await client.until_eof()

                nursery.start_soon(intruder)
            for i in range(50):
                await mb.put("work", b"%d" % i)
        assert (await mb.queue_stats("work")).ready == 50
