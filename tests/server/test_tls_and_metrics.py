"""TLS with a throwaway CA (trustme), and the /metrics endpoint of an in-process server."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme
from prometheus_client.parser import text_string_to_metric_families
from raw_wire import RawClient, StartServer

import minibroker
from minibroker.server.app import BrokerServer


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.private_key_pem.write_to_path(str(key))
    with chain.open("wb") as fh:
        for blob in cert.cert_chain_pems:
            fh.write(blob.bytes())
    return chain, key


async def test_tls(start_server: StartServer, ca: trustme.CA, tls_files: tuple[Path, Path]) -> None:
    chain, key = tls_files
    server = await start_server(tls_cert=chain, tls_key=key)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with minibroker.connect(
        f"minibrokers://127.0.0.1:{server.port}", ssl_context=context
    ) as mb:
        assert await mb.ping(b"secret") == b"secret"
        assert len(server.sessions) == 1

    # A client that does not trust the CA is refused by its own TLS check.
    with pytest.raises((ssl.SSLError, trio.BrokenResourceError)):
        async with minibroker.connect(f"minibrokers://127.0.0.1:{server.port}"):
            pass  # pragma: no cover

    # A plaintext client gets nowhere, and the server is unaffected.
    raw = await trio.open_tcp_stream("127.0.0.1", server.port)  # type: ignore[arg-type]
    await raw.send_all(b"\x00\x00\x00\x05hello")
    answer = b""
    with contextlib.suppress(trio.BrokenResourceError):  # EOF or reset: both fine
        while chunk := await raw.receive_some(4096):
            answer += chunk
    assert answer == b"" or answer[0] == 0x15  # nothing, or a TLS alert record
    await raw.aclose()

    async with minibroker.connect(
        f"minibrokers://127.0.0.1:{server.port}", ssl_context=context
    ) as mb:
        assert await mb.ping(b"again") == b"again"
    await trio.testing.wait_all_tasks_blocked()
    assert server.sessions == {}


async def http_get(port: int, path: str) -> tuple[str, str]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
    response = b""
    while chunk := await stream.receive_some(65536):
        response += chunk
    await stream.aclose()
    head, _, body = response.partition(b"\r\n\r\n")
    return head.decode(), body.decode()


def samples(text: str) -> dict[str, float]:
    """Every sample of an exposition, keyed by name and labels."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


async def test_metrics_endpoint(start_server: StartServer) -> None:
    server = await start_server(metrics_port=0)
    assert server.metrics_port is not None
    async with minibroker.connect(f"minibroker://127.0.0.1:{server.port}") as mb:
        await mb.ping()
        raw = await RawClient.connect(server.port)  # type: ignore[arg-type]
        await raw.handshake()
        await raw.send({"op": "nope", "id": 2})
        assert (await raw.receive_one())["code"] == "unknown_op"

        head, body = await http_get(server.metrics_port, "/metrics")
        assert head.startswith("HTTP/1.0 200")
        assert "text/plain" in head
        values = samples(body)
        assert values["minibroker_connections"] == 2
        assert values["minibroker_connections_accepted_total"] == 2
        assert values["minibroker_frames_in_total"] == 4  # 2 hellos, a ping, a bad op
        assert values["minibroker_frames_out_total"] == 4
        assert values["minibroker_errors_total{code=unknown_op}"] == 1
        assert values["minibroker_bytes_in_total"] > 0
        assert values["minibroker_bytes_out_total"] > 0
        await raw.aclose()

    head, _ = await http_get(server.metrics_port, "/nothing-here")
    assert head.startswith("HTTP/1.0 404")


async def test_each_broker_has_its_own_registry(start_server: StartServer) -> None:
    """Two brokers in one process do not share (or clash over) metrics."""
    first: BrokerServer = await start_server(metrics_port=0)
    second: BrokerServer = await start_server(metrics_port=0)
    assert first.registry is not second.registry
    async with minibroker.connect(f"minibroker://127.0.0.1:{first.port}") as mb:
        await mb.ping()
    assert first.metrics_port is not None and second.metrics_port is not None
    _, body = await http_get(second.metrics_port, "/metrics")
    assert samples(body)["minibroker_frames_in_total"] == 0
