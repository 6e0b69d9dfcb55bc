"""Connecting: the options every ``connect`` takes, and errors that say what to do.

A bare ``ConnectionRefusedError``, "the broker closed the connection" or an
event loop's internals leave a new user guessing; the clients raise the
same exception classes (so ``except OSError`` or ``except Unauthorized``
still work) with a message that names the broker and the likely fix.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypedDict

import sniffio

from minibroker.client.protocol import CLOSED_BY_BROKER, Call, hello_call
from minibroker.client.url import BrokerAddress, parse_url
from minibroker.errors import ConnectionClosed, Unauthorized

#: Where the clients connect by default.
DEFAULT_URL = "minibroker://127.0.0.1:7878"


class ConnectOptions(TypedDict, total=False):
    """What ``minibroker.connect``, ``minibroker.aio.connect`` and
    ``minibroker.connect_sync`` take besides the URL (all keyword-only)."""

    #: Overrides the URL's token (``minibroker://TOKEN@host:port``).
    token: str | None
    #: Overrides the URL's ``?namespace=NAME``.
    namespace: str | None
    #: How the broker names this connection (default: the client's flavour).
    client_name: str
    #: TLS with this context (``minibrokers://`` alone uses the default one).
    ssl_context: ssl.SSLContext | None
    #: Items each subscription may hold unread, unless its own ``max_pending``
    #: says otherwise (default: a topic subscription's ``buffer``, and
    #: ``DEFAULT_MAX_PENDING`` for log tails and responders).
    max_pending: int | None


@dataclass(frozen=True, slots=True)
class Dial:
    """A ``connect``'s URL and options, resolved once for every flavour."""

    address: BrokerAddress
    #: None for plain TCP.
    ssl_context: ssl.SSLContext | None
    client_name: str
    token: str | None
    namespace: str | None
    max_pending: int | None

    @classmethod
    def of(cls, url: str, options: Mapping[str, Any], client_name: str) -> Dial:
        """``options`` (a ``ConnectOptions``) over ``url``; TypeError for an unknown one."""
        unknown = sorted(options.keys() - ConnectOptions.__optional_keys__)
        if unknown:
            raise TypeError(f"connect() got unexpected keyword arguments: {', '.join(unknown)}")
        address = parse_url(url)
        ssl_context = options.get("ssl_context")
        if ssl_context is None and address.tls:
            ssl_context = ssl.create_default_context()
        token, namespace = options.get("token"), options.get("namespace")
        return cls(
            address,
            ssl_context,
            options.get("client_name", client_name),
            address.token if token is None else token,
            address.namespace if namespace is None else namespace,
            options.get("max_pending"),
        )

    def hello(self) -> Call[dict[str, Any]]:
        return hello_call(self.client_name, self.token, self.namespace)

    @contextmanager
    def connecting(self) -> Iterator[None]:
        """Around opening the connection: an ``OSError`` (same class and errno)
        names the broker and how to start one. TLS errors pass unchanged: they
        say enough."""
        address = self.address
        try:
            yield
        except ssl.SSLError:
            raise
        except OSError as raised:
            error = _single_cause(raised)
            reason = error.strerror or str(error) or type(error).__name__
            message = (
                f"cannot reach the broker at {address.host}:{address.port} ({reason}); "
                f"is it running? Start one with: minibroker serve --port {address.port}"
            )
            args = (message,) if error.errno is None else (error.errno, message)
            raise type(error)(*args) from None

    @contextmanager
    def greeting(self) -> Iterator[None]:
        """Around the hello call: a refused token says how to pass one; a
        connection closed before any answer on a plain socket suggests TLS."""
        where = f"{self.address.host}:{self.address.port}"
        try:
            yield
        except Unauthorized as error:
            raise Unauthorized(
                f"{error.message}: pass the broker's token in the URL "
                f"(minibroker://TOKEN@{where}) or as token=...",
                **error.details,
            ) from None
        except ConnectionClosed as error:
            # Only a plain end of stream: a broker that says why (too many
            # connections, shutting down) is not speaking TLS.
            if self.ssl_context is not None or not error.message.endswith(CLOSED_BY_BROKER):
                raise
            raise ConnectionClosed(
                f"{error.message} before answering hello; if the broker serves TLS, "
                f"connect with minibrokers://{where}"
            ) from None


def _single_cause(error: OSError) -> OSError:
    """The one attempt's error behind Trio's "all attempts to connect ... failed"."""
    cause = error.__cause__
    if error.errno is None and isinstance(cause, BaseExceptionGroup):
        causes = cause.exceptions
        if len(causes) == 1 and isinstance(causes[0], OSError):
            return causes[0]
    if error.errno is None and isinstance(cause, OSError):
        return cause
    return error


#: The client to use under each event loop.
_CLIENT_FOR = {"trio": "minibroker.connect(url)", "asyncio": "minibroker.aio.connect(url)"}


def require_event_loop(wanted: str, what: str | None = None, instead: str | None = None) -> None:
    """One clear sentence if ``what`` (a ``wanted`` "trio"/"asyncio" API, by
    default that loop's client) runs under another event loop: ``instead``,
    by default the other loop's client, is what to use."""
    running = _running_library()
    if running == wanted or running is None:
        return
    what = what or f"{_CLIENT_FOR[wanted].removesuffix('(url)')} (the {wanted} client)"
    instead = instead or f"{_CLIENT_FOR.get(running, 'the client of that loop')} (same methods)"
    raise RuntimeError(f"{what} runs on {wanted} but this code runs under {running}: use {instead}")


def refuse_blocking_on_trio(what: str) -> None:
    """Raise at once if blocking ``what`` is called on a thread that runs Trio's loop.

    Blocking there freezes every task of the loop, an in-process broker's
    too, so the call could only time out after its 30 seconds.
    """
    if _running_library() == "trio":
        raise RuntimeError(
            f"{what} blocks, and this thread runs Trio's event loop (a broker in this "
            "process could never answer): use `async with minibroker.connect(url)` here, "
            "or call the blocking client from a worker thread (trio.to_thread.run_sync)"
        )


def _running_library() -> str | None:
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None
