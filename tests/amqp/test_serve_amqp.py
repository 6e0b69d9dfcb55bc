"""``minibroker serve --amqp-port`` as a real process: the port is logged, AMQP works, SIGTERM."""

from __future__ import annotations

import re

import pytest
from pamqp import commands

from tests.amqp.amqp_wire import WireClient  # type: ignore[import-not-found]
from tests.cli.test_serve_process import serve, stop  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow

AMQP_LINE = re.compile(r"amqp front end listening on 127\.0\.0\.1:(?P<port>\d+)")


async def test_serve_with_an_amqp_port() -> None:
    async with serve("--port", "0", "--amqp-port", "0") as served:
        [port] = [int(m["port"]) for line in served.log if (m := AMQP_LINE.search(line))]
        client = await WireClient.connect(port)
        await client.handshake()
        await client.open_channel()
        await client.send(1, commands.Queue.Declare(queue="jobs"))
        await client.expect(commands.Queue.DeclareOk)
        assert await stop(served) == 0
        # A goodbye in AMQP's terms: Connection.Close 320 CONNECTION_FORCED.
        [close] = await client.until_eof()
        assert isinstance(close, commands.Connection.Close) and close.reply_code == 320
        await client.aclose()
