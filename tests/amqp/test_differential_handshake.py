"""A client that stops in the middle of the AMQP handshake, against minibroker and RabbitMQ.

RabbitMQ closes such a connection after its ``handshake_timeout`` (10 s by
default) without a Connection.Close: the client got Connection.Start (and
Tune, if it sent StartOk), then the socket closes. minibroker does the same
after its hello timeout, set to RabbitMQ's 10 s here
(``minibroker/amqp/connection.py::AmqpSession.handshake_timed_out``); it used
to send Connection.Close 320 with the msgpack door's "no hello" wording.
The two servers are probed at once, in threads, so the test takes the 10
seconds once. RabbitMQ is the one on 127.0.0.1:5672; the test is skipped,
saying so, when it is not there. (On Trio's mock clock, without RabbitMQ:
tests/reliability/test_hello_timeout_doors.py.)
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest
from amqp_wire import take_frame
from pamqp import commands, frame
from test_differential_rabbitmq import RABBITMQ, _rabbitmq_reachable

from minibroker.amqp.framing import PROTOCOL_HEADER
from minibroker.testing import run_in_thread

#: RabbitMQ's default handshake_timeout, in seconds.
HANDSHAKE_TIMEOUT = 10.0
STALLS = {
    "after the protocol header": PROTOCOL_HEADER,
    "after StartOk": PROTOCOL_HEADER
    + frame.marshal(commands.Connection.StartOk({}, "PLAIN", "\0guest\0guest"), 0),
}


def _stall(address: tuple[str, int], data: bytes) -> list[str]:
    """Send ``data``, then nothing: the frames that came before the server closed."""
    with socket.create_connection(address, timeout=3 * HANDSHAKE_TIMEOUT) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:  # RabbitMQ resets rather than closes
                break
            if not chunk:
                break
            received += chunk
    names = []
    while (taken := take_frame(received)) is not None:
        received, _, value = taken
        names.append(type(value).__name__)
    return names


@pytest.mark.skipif(not _rabbitmq_reachable(), reason="RabbitMQ is not on 127.0.0.1:5672")
def test_a_stalled_handshake_is_closed_without_a_word_as_by_rabbitmq() -> None:
    with run_in_thread(amqp_port=0, hello_timeout=HANDSHAKE_TIMEOUT) as server:
        url = urlparse(server.amqp_url)
        ours_address = (url.hostname or "127.0.0.1", url.port or 0)
        with ThreadPoolExecutor(2 * len(STALLS)) as pool:
            ours = {name: pool.submit(_stall, ours_address, d) for name, d in STALLS.items()}
            theirs = {name: pool.submit(_stall, RABBITMQ, d) for name, d in STALLS.items()}
            results = {name: (ours[name].result(), theirs[name].result()) for name in STALLS}
    for name, (mine, rabbit) in results.items():
        assert mine == rabbit, name
    assert results["after StartOk"][1] == ["Start", "Tune"]  # no Close
