"""``minibroker serve --http-port 0`` as a real process, driven by curl."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import trio

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

HTTP_LINE = re.compile(r"HTTP API on (?P<url>http://127\.0\.0\.1:\d+)")
#: Generous: only ever reached when something is broken.
START_TIMEOUT = 30


async def _url_from_log(stderr: trio.abc.ReceiveStream) -> str:
    """Read the server's log until it says where the HTTP face is."""
    buffer = b""
    while True:
        chunk = await stderr.receive_some(65536)
        if not chunk:
            raise AssertionError("the server exited before serving HTTP:\n" + buffer.decode())
        buffer += chunk
        if match := HTTP_LINE.search(buffer.decode(errors="replace")):
            return match["url"]


async def _curl(*args: str) -> dict:
    done = await trio.run_process(
        ["curl", "--silent", "--show-error", "--fail-with-body", *args], capture_stdout=True
    )
    return json.loads(done.stdout)


async def test_curl_puts_fetches_and_acks() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MINIBROKER_")}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "minibroker", "serve", "--port", "0", "--http-port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment,
    )
    try:
        assert process.stderr is not None
        with trio.fail_after(START_TIMEOUT):
            url = await _url_from_log(process.stderr)
        assert await _curl("-X", "PUT", f"{url}/v1/queues/jobs") == {
            "queue": "jobs",
            "created": True,
        }
        json_body = ["-H", "content-type: application/json", "--data"]
        put = await _curl(*json_body, '{"body": "hello"}', f"{url}/v1/queues/jobs/messages")
        assert put == {"count": 1}
        fetched = await _curl(*json_body, '{"max_messages": 10}', f"{url}/v1/queues/jobs/fetch")
        [delivery] = fetched["deliveries"]
        assert delivery["body"] == "hello"
        ack = json.dumps({"deliveries": [delivery["delivery_id"]]})
        assert await _curl(*json_body, ack, f"{url}/v1/queues/jobs/ack") == {"count": 1}
        with pytest.raises(subprocess.CalledProcessError) as failed:
            await _curl(f"{url}/v1/queues/missing")
        assert failed.value.returncode == 22  # curl's "HTTP error" exit status
    finally:
        process.terminate()
        await process.wait()
