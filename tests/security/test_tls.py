"""TLS with a certificate made in the test (trustme): tokens and permissions over it,
old protocol versions refused, and a stalled handshake dropped without harm."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme
from security_support import StartServer

import minibroker
from minibroker.access.permissions import Permissions
from minibroker.errors import Forbidden, Unauthorized
from minibroker.server.app import TLS_HANDSHAKE_TIMEOUT


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.private_key_pem.write_to_path(str(key))
    with chain.open("wb") as fh:
        for blob in cert.cert_chain_pems:
            fh.write(blob.bytes())
    return {"tls_cert": chain, "tls_key": key}


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_tokens_and_permissions_over_tls(
    serve: StartServer, ca: trustme.CA, tls_files: dict[str, Path]
) -> None:
    server = await serve(
        tokens={"t-app": "app"},
        permissions=Permissions.parse("allow app read,write queue:app.#\n"),
        **tls_files,
    )
    base = f"127.0.0.1:{server.port}"
    async with minibroker.connect(f"minibrokers://t-app@{base}", ssl_context=trusting(ca)) as mb:
        with pytest.raises(Forbidden):
            await mb.put("other", b"x")
        with pytest.raises(Forbidden):
            await mb.declare_queue("app.jobs")
    with pytest.raises(Unauthorized):
        async with minibroker.connect(f"minibrokers://wrong@{base}", ssl_context=trusting(ca)):
            pass  # pragma: no cover


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_old_tls_versions_are_refused(
    serve: StartServer, ca: trustme.CA, tls_files: dict[str, Path]
) -> None:
    server = await serve(**tls_files)
    context = trusting(ca)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, trio.BrokenResourceError, OSError)):
        async with minibroker.connect(
            f"minibrokers://127.0.0.1:{server.port}", ssl_context=context
        ):
            pass  # pragma: no cover
    async with minibroker.connect(
        f"minibrokers://127.0.0.1:{server.port}", ssl_context=trusting(ca)
    ) as mb:
        assert await mb.ping(b"tls1.2+") == b"tls1.2+"


async def test_a_stalled_handshake_is_dropped(
    serve: StartServer, ca: trustme.CA, tls_files: dict[str, Path], autojump_clock: object
) -> None:
    server = await serve(**tls_files)
    stalled = await trio.open_tcp_stream("127.0.0.1", server.port)  # type: ignore[arg-type]
    await stalled.send_all(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
    started = trio.current_time()
    with trio.fail_after(TLS_HANDSHAKE_TIMEOUT + 5):
        try:
            while await stalled.receive_some(4096):
                pass
        except trio.BrokenResourceError:
            pass  # a reset is a fine way to be dropped
    assert trio.current_time() - started >= TLS_HANDSHAKE_TIMEOUT
    await stalled.aclose()
    assert server.sessions == {}


async def test_tls_handshakes_in_progress_count_as_connections(
    serve: StartServer, ca: trustme.CA, tls_files: dict[str, Path]
) -> None:
    """Connections that never send a ClientHello were counted nowhere: any
    number of them could each hold a descriptor and a task for 10 s. They
    count against --max-connections now, and the oldest makes room."""
    import os
    import socket

    def closed_by_server(stream: trio.SocketStream) -> bool:
        peek = socket.socket(fileno=os.dup(stream.socket.fileno()))
        try:
            return peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except ConnectionResetError:
            return True
        finally:
            peek.close()

    server = await serve(max_connections=2, **tls_files)
    stalled = [await trio.open_tcp_stream("127.0.0.1", server.port) for _ in range(3)]  # type: ignore[arg-type]
    await trio.testing.wait_all_tasks_blocked()
    assert closed_by_server(stalled[0])  # the third made room
    assert not closed_by_server(stalled[1]) and not closed_by_server(stalled[2])
    assert server.tls_handshakes == 2 and len(server.handshaking) == 2

    async with minibroker.connect(
        f"minibrokers://localhost:{server.port}", ssl_context=trusting(ca)
    ) as mb:  # and so does a client that completes its handshakes
        assert await mb.ping(b"in") == b"in"
        assert closed_by_server(stalled[1])
    for stream in stalled:
        await stream.aclose()
