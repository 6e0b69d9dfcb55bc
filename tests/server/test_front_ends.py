"""The shell serves any front end's sessions on a port of its own.

A front end (AMQP, Kafka ...) only supplies a sans-I/O session; the shell
gives it the same listener, reader, writer, shutdown and group-commit
plumbing as the msgpack protocol. A line-based echo session stands in here:
what a test can pin is that the server listens on the front end's port,
feeds the session bytes, sends what it produces, and tells it when the
connection goes, while the msgpack port keeps working beside it.
"""

from __future__ import annotations

import trio

import minibroker
from minibroker.config import ServerConfig
from minibroker.core.broker import Broker
from minibroker.errors import BrokerError
from minibroker.server.app import BrokerServer
from minibroker.server.wire_session import FrontEnd, WireSession


class UpperEcho(WireSession):
    """Answers every line with the line upper-cased; ``bye`` closes."""

    def __init__(self, lost: trio.Event, conn_id: int) -> None:
        super().__init__()
        self.client_name = "echo"
        self._buffer = b""
        self._out: list[bytes] = []
        self._lost = lost
        self._conn_id = conn_id

    @property
    def handshake_done(self) -> bool:
        return True

    def receive_data(self, data: bytes | bytearray, now: float) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line == b"bye":
                self.kick(BrokerError("goodbye"))
                return
            self._out.append(line.upper() + b"\n")

    @property
    def pending_input_bytes(self) -> int:
        return len(self._buffer)  # a partial line

    @property
    def buffered_input_bytes(self) -> int:
        return len(self._buffer)

    def discard_input(self) -> None:
        self._buffer = b""

    def resume_input(self, now: float) -> None:
        pass

    def accepting_input(self) -> bool:
        return self.closing is None

    @property
    def over_high_water(self) -> bool:
        return False

    def has_output(self) -> bool:
        return bool(self._out)

    def data_to_send(self) -> bytes:
        data, self._out = b"".join(self._out), []
        return data

    def kick(self, error: BrokerError) -> None:
        self._out.append(b"closing\n")
        self.closing = error
        self.wakeup()

    def eof_received(self) -> None:
        pass

    def connection_lost(self, now: float) -> None:
        self._lost.set()

    def shutdown(self) -> None:
        self.kick(BrokerError("shutting down"))


async def _read_until(stream: trio.SocketStream, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = await stream.receive_some(1024)
        if not chunk:
            break
        data += chunk
    return data


async def test_a_front_end_is_served_on_its_own_port_beside_the_msgpack_port() -> None:
    lost = trio.Event()
    server = BrokerServer(ServerConfig(port=0))

    def make_session(broker: Broker, conn_id: int, peer_name: str) -> UpperEcho:
        assert broker is server.broker
        return UpperEcho(lost, conn_id)

    server.front_ends.append(FrontEnd("echo", "127.0.0.1", 0, make_session))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        port = server.front_end_ports["echo"]
        assert port not in (0, server.port)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"hello\nfront end\n")
        assert await _read_until(stream, b"FRONT END\n") == b"HELLO\nFRONT END\n"
        async with minibroker.connect(f"minibroker://127.0.0.1:{server.port}") as client:
            await client.ping()
        await stream.send_all(b"bye\n")
        assert await _read_until(stream, b"closing\n") == b"closing\n"
        assert await stream.receive_some(1024) == b""  # the server closed it
        await stream.aclose()
        with trio.fail_after(5):
            await lost.wait()
        server.shutdown()
