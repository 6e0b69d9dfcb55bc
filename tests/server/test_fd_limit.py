"""Out of file descriptors: one warning per episode, not a traceback every 100 ms.

Issue 14 item 12: at the process's fd limit Trio's accept loop logged an
ERROR with a full traceback every 100 ms (248 in one episode). The broker's
own accept loop logs a warning when an episode starts and a count when it
ends. Runs on Trio's MockClock: 100 failed accepts take no real time.
"""

from __future__ import annotations

import errno
import logging
import os
import resource

import pytest
import trio
import trio.testing

import minibroker
from minibroker.embedded import open_broker
from minibroker.server.accept import raise_open_file_limit

FAILURES = 100


class ExhaustedListener(trio.abc.Listener[trio.SocketStream]):
    """A real listener whose first ``failures`` accepts fail with EMFILE."""

    def __init__(self, inner: trio.SocketListener, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def accept(self) -> trio.SocketStream:
        await trio.lowlevel.checkpoint()
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return await self.inner.accept()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_fd_limit_episode_logs_one_warning_and_a_count(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with open_broker() as broker:
        [inner] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = inner.socket.getsockname()[1]
        listener = ExhaustedListener(inner, FAILURES)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broker.server._accept_loop, [listener], nursery, None, False)
            async with minibroker.connect(f"minibroker://127.0.0.1:{port}") as mb:
                assert await mb.ping(b"through") == b"through"
            nursery.cancel_scope.cancel()
    about_accept = [r for r in caplog.records if "accept" in r.getMessage()]
    assert [r.levelname for r in about_accept] == ["WARNING", "WARNING"]
    assert "EMFILE" in about_accept[0].getMessage()
    assert f"after {FAILURES} failed accepts" in about_accept[1].getMessage()
    assert all(r.exc_info is None for r in caplog.records)


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        before, after = raise_open_file_limit() or (0, 0)
        assert before == lowered
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == after
        if hard != resource.RLIM_INFINITY:
            assert after == hard
        assert f"raised the open-file limit from {lowered} to {after}" in caplog.text
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
