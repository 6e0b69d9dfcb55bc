"""The client API, written once for every client flavour.

Each method builds a ``Call`` (see protocol.py) with the helpers of one
model module and hands it to ``_call``, which each client implements for its
own concurrency style. ``AsyncMethods`` serves the Trio, asyncio and
in-process clients; ``SyncMethods`` the blocking client. The bodies are the
same one-liners, so the method names, arguments and results cannot drift.
"""

from __future__ import annotations

import abc
from typing import TypeVar

from minibroker.client.protocol import Call

T = TypeVar("T")


def ping_call(data: bytes | None) -> Call[bytes | None]:
    return Call("ping", {} if data is None else {"data": data})


class AsyncMethods(abc.ABC):
    @abc.abstractmethod
    async def _call(self, call: Call[T]) -> T:
        """Send ``call`` and wait for its parsed result (each client's own transport)."""

    async def ping(self, data: bytes | None = None) -> bytes | None:
        """Round trip to the broker; returns ``data`` back."""
        return await self._call(ping_call(data))


class SyncMethods(abc.ABC):
    @abc.abstractmethod
    def _call(self, call: Call[T]) -> T:
        """Send ``call`` and block until its parsed result."""

    def ping(self, data: bytes | None = None) -> bytes | None:
        """Round trip to the broker; returns ``data`` back."""
        return self._call(ping_call(data))
