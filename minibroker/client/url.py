"""Parse broker URLs: ``minibroker://host:port`` (or ``minibrokers://`` for TLS)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from minibroker.defaults import DEFAULT_PORT

SCHEMES = {"minibroker": False, "minibrokers": True, "tcp": False}
#: The query options a URL may carry (``?namespace=NAME``).
URL_OPTIONS = frozenset({"namespace"})
#: The user-info part of a URL (``scheme://TOKEN@``), where the token lives.
_CREDENTIALS = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?)[^@/?#]*@")


def redact_url(url: str) -> str:
    """``url`` with its token replaced by ``***``.

    A token is a password: error messages, logs and ``--help`` show URLs
    only through this, so a pasted error or a CI log never leaks one.
    """
    return _CREDENTIALS.sub(r"\1***@", url, count=1)


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
            f"unsupported URL scheme {parts.scheme!r} in {redact_url(url)!r}; "
            "use minibroker:// (or minibrokers:// for TLS)"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - URL_OPTIONS)
    if unknown:
        # A misspelt ``?namespce=`` silently ignored would put a test in the
        # default namespace, sharing everything: refuse it instead.
        raise ValueError(
            f"unknown URL option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))} in {redact_url(url)!r}; "
            f"the known options are: {', '.join(sorted(URL_OPTIONS))}"
        )
    namespace = query.get("namespace", [None])[0]
    token = unquote(parts.username) if parts.username else None
    return BrokerAddress(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or DEFAULT_PORT,
        tls=SCHEMES[parts.scheme],
        token=token,
        namespace=namespace,
    )
