"""One server-wide budget for the bytes of incomplete frames, shared by every connection.

Each connection may hold one frame of up to ``max_frame_bytes`` while it
arrives, so without a shared bound 150 connections each sending the first
half of a 16 MiB frame cost the server 2.4 GB. The budget bounds the total
the way Kafka's ``queued.max.request.bytes`` memory pool does:

* As soon as a frame's length prefix is in, its connection claims the whole
  declared frame (not just the bytes that arrived). A connection that has
  its claim never waits for the budget again until that frame is complete,
  so connections cannot deadlock each other holding halves of frames.
* A claim is granted while the *other* connections hold less than the
  limit, even if this frame takes the total past it. So a legitimate frame
  as large as ``max_frame_bytes`` goes through whenever the budget is not
  exhausted, whatever the limit is set to; the total stays below the limit
  plus one frame plus the chunks of connections waiting for room.
* A claim that is not granted pauses the connection, holding no claim (it
  reads nothing more, so TCP pushes back on its client), until released
  claims leave room; a
  connection that has not completed hello is refused instead
  (``limit_exceeded``, closed): whoever can connect must not be able to
  park memory in the server.
* Claims shrink as frames complete and are released when a connection
  closes.
* Connections that have not completed their handshake (hello, the AMQP
  handshake, a Kafka login, an SQS connection's first request) claim from
  a quarter of the budget, ``pre_auth_limit``, and only within it: no
  overshoot. Otherwise a few unauthenticated clients declaring large frames
  (three Kafka size prefixes of 100 MiB, or 32 SQS ``Content-Length`` of
  8 MiB) held the whole budget, and every authenticated client's next large
  frame waited on them; now those always have three quarters of it.

* When every claim is released after the claims reached ``drained_after``
  bytes, ``on_drained`` runs (the server returns freed memory to the
  system then: partial frames are many small heap blocks, which glibc keeps
  after they are freed, so without it the RSS a slowloris burst raised never
  came down after its connections closed).

Pure bookkeeping plus one Trio event; the connection decides when to ask.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

#: Peak claims after which draining the budget calls ``on_drained``.
DRAINED_AFTER_BYTES = 16 * 1024 * 1024


class InputBudget:
    """Bytes claimed for partial frames, against a server-wide limit."""

    __slots__ = (
        "_on_drained",
        "_peak",
        "_room",
        "_waiting",
        "drained_after",
        "held",
        "limit",
        "paused",
        "pre_auth_held",
        "pre_auth_limit",
        "refused",
        "waiting_bytes",
    )

    def __init__(
        self,
        limit: int,
        *,
        on_drained: Callable[[], object] | None = None,
        drained_after: int = DRAINED_AFTER_BYTES,
    ) -> None:
        self.limit = limit
        self._on_drained = on_drained
        self.drained_after = drained_after
        #: Highest ``held`` since the budget was last drained.
        self._peak = 0
        #: Bytes claimed by connections now.
        self.held = 0
        #: The most, and the bytes now, claimed by connections still in their
        #: handshake (part of ``held``).
        self.pre_auth_limit = max(limit // 4, 1)
        self.pre_auth_held = 0
        #: Bytes buffered by connections waiting for room (one read each at
        #: most). Not claims: counting them could let waiters block each
        #: other for good, with nobody left to release anything.
        self.waiting_bytes = 0
        #: Times a connection had to wait for room, and times one was refused.
        self.paused = 0
        self.refused = 0
        self._waiting = 0
        self._room = trio.Event()

    def claim(self, current: int, wanted: int, *, pre_auth: bool = False) -> bool:
        """Move one connection's claim from ``current`` to ``wanted`` bytes.

        Shrinking always succeeds; growing succeeds while the other
        connections hold less than the limit. A connection still in its
        handshake (``pre_auth``, the same for both amounts) must also stay
        within ``pre_auth_limit`` with the others in their handshake. False
        leaves the claim as it was.
        """
        if wanted <= current:
            self.release(current - wanted, pre_auth=pre_auth)
            return True
        if self.held - current >= self.limit:
            return False
        if pre_auth:
            if self.pre_auth_held - current + wanted > self.pre_auth_limit:
                return False
            self.pre_auth_held += wanted - current
        self.held += wanted - current
        self._peak = max(self._peak, self.held)
        return True

    def release(self, nbytes: int, *, pre_auth: bool = False) -> None:
        if nbytes:
            self.held -= nbytes
            if pre_auth:
                self.pre_auth_held -= nbytes
            if not self.held and self._peak >= self.drained_after:
                self._peak = 0
                if self._on_drained is not None:
                    self._on_drained()
            if self._waiting and self.held < self.limit:
                self._room.set()
                self._room = trio.Event()

    async def wait_for_room(self, buffered: int) -> None:
        """Wait, holding no claim and ``buffered`` bytes, until a claim can be granted."""
        self._waiting += 1
        self.paused += 1
        self.waiting_bytes += buffered
        try:
            while self.held >= self.limit:
                await self._room.wait()
        finally:
            self._waiting -= 1
            self.waiting_bytes -= buffered
