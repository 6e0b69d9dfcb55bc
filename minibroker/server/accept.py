"""Accepting connections within the process's file-descriptor limit.

Every connection holds a file descriptor. When the process has none left,
``accept`` fails with EMFILE (or ENFILE, ENOBUFS, ENOMEM for the system as
a whole) until some connection closes. Trio's ``serve_listeners`` retries
every 100 ms, logging an ERROR with a full traceback each time: 248 of them
in one episode of a stress test (issue 14 item 12), burying everything else
in the log. Here an episode logs twice: a warning when it starts, and a line
with the count of failed accepts when a connection is accepted again.

Two things make episodes rare: :func:`raise_open_file_limit`, called once at
``minibroker serve`` start, lifts the soft ``RLIMIT_NOFILE`` to the hard
limit (as NATS and Redis do: the default soft limit of 1024 is far below
what a broker with many clients needs), and ``--max-connections`` refuses
clients politely before descriptors run out.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import trio

log = logging.getLogger("minibroker.server")

#: accept() errors that mean "no resources now", not "this listener is broken".
CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Seconds between accept attempts while out of descriptors (Trio's choice too).
RETRY_SECONDS: Final = 0.1

StreamT = TypeVar("StreamT", bound=trio.abc.AsyncResource)


class CapacityEpisode:
    """Counts the failed accepts of one out-of-descriptors episode, for two log lines."""

    def __init__(self) -> None:
        self.failures = 0
        self.started = 0.0

    def failed(self, error: OSError) -> None:
        if not self.failures:
            self.started = trio.current_time()
            log.warning(
                "cannot accept connections: %s (%s); retrying every %g s, quietly, until a "
                "descriptor is free (see --max-connections and the open-file limit)",
                errno.errorcode.get(error.errno or 0, error.errno),
                os.strerror(error.errno or 0),
                RETRY_SECONDS,
            )
        self.failures += 1

    def accepted(self) -> None:
        if self.failures:
            log.warning(
                "accepting connections again, after %d failed accepts over %.1f s",
                self.failures,
                trio.current_time() - self.started,
            )
            self.failures = 0


async def serve_listeners(
    handler: Callable[[StreamT], Awaitable[None]],
    listeners: Sequence[trio.abc.Listener[StreamT]],
    *,
    handler_nursery: trio.Nursery,
) -> None:
    """Accept from every listener forever, each stream handled in ``handler_nursery``.

    Like ``trio.serve_listeners``, but an out-of-descriptors episode is one
    warning and one summary, whichever listener hits it.
    """
    episode = CapacityEpisode()
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_serve_one, handler, listener, handler_nursery, episode)


async def _serve_one(
    handler: Callable[[StreamT], Awaitable[None]],
    listener: trio.abc.Listener[StreamT],
    handler_nursery: trio.Nursery,
    episode: CapacityEpisode,
) -> None:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in CAPACITY_ERRNOS:
                    raise
                episode.failed(exc)
                await trio.sleep(RETRY_SECONDS)
                continue
            episode.accepted()
            handler_nursery.start_soon(_run_handler, handler, stream)


async def _run_handler(handler: Callable[[StreamT], Awaitable[None]], stream: StreamT) -> None:
    try:
        await handler(stream)
    finally:
        await trio.aclose_forcefully(stream)


def raise_open_file_limit() -> tuple[int, int] | None:
    """Lift the soft RLIMIT_NOFILE to the hard limit; log and return (before, after).

    None where the platform has no such limit. Never fails: a limit that
    cannot be raised is logged and left as it is.
    """
    try:
        import resource
    except ImportError:  # not on this platform (Windows)
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        # Linux refuses an infinite soft limit (fs.nr_open caps it).
        target = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else soft
    if soft == target:
        log.info("open-file limit: %d (the hard limit)", soft)
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft, soft
    log.info("raised the open-file limit from %d to %d (the hard limit)", soft, target)
    return soft, target
