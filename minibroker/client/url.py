"""Parse broker URLs: ``minibroker://host:port`` (or ``minibrokers://`` for TLS)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from minibroker.defaults import DEFAULT_PORT

SCHEMES = {"minibroker": False, "minibrokers": True, "tcp": False}


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    token: str | None = None
    namespace: str | None = None


def parse_url(url: str) -> BrokerAddress:
    """``minibroker://[token@]host[:port][?namespace=NAME]``; the default port is 7878."""
    parts = urlsplit(url if "://" in url else f"minibroker://{url}")
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"unsupported URL scheme {parts.scheme!r} in {url!r}; use minibroker:// or minibrokers://"
        )
    query = parse_qs(parts.query)
    namespace = query.get("namespace", [None])[0]
    token = unquote(parts.username) if parts.username else None
    return BrokerAddress(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or DEFAULT_PORT,
        tls=SCHEMES[parts.scheme],
        token=token,
        namespace=namespace,
    )
