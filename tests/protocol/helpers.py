"""Drive protocol sessions in-process, with a hand-cranked clock.

Also :class:`MemoryOpener`, a StorageOpener in memory whose stores survive a
broker "restart" (a new ``Broker`` on the same opener), for durable-model tests
that need no disk.

No sockets and no Trio: a ``Net`` owns a ``Broker`` and the current time; each
``Client`` is one ``Session`` (one connection) fed with encoded frames, whose
output is parsed back with ``RawFrameDecoder``. Responses are collected by
request id, so pipelined and parked (long-poll) requests are easy to check::

    net = Net()
    a = net.connect()
    a.call("queue.declare", queue="jobs")
    rid = a.send("fetch", queue="jobs", wait=5.0)   # parks
    a.call("put", queue="jobs", messages=[{"body": b"x"}])
    assert a.result(rid)[0]["body"] == b"x"
    net.advance(30)                                 # fire timers
"""

from __future__ import annotations

from typing import Any

from minibroker.core.broker import Broker
from minibroker.errors import BadRequest, BrokerError, error_from_code
from minibroker.protocol import frames
from minibroker.protocol.codec import RawFrameDecoder, encode, pack_frame
from minibroker.protocol.session import Session, SessionSettings
from minibroker.storage import LogStore, MemoryLog


class Net:
    """A broker, the connections to it, and the time they all see."""

    def __init__(self, broker: Broker | None = None, *, now: float = 1000.0) -> None:
        self.broker = broker or Broker(memory_log=MemoryLog)
        self.now = now
        self.clients: list[Client] = []
        self._next_conn = 1

    def connect(
        self,
        namespace: str | None = None,
        *,
        hello: bool = True,
        settings: SessionSettings | None = None,
    ) -> Client:
        client = Client(self, self._next_conn, settings)
        self._next_conn += 1
        self.clients.append(client)
        if hello:
            version = frames.PROTOCOL_VERSION
            client.call("hello", version=version, client="test", namespace=namespace)
        return client

    def advance(self, seconds: float) -> int:
        """Move the clock forward and fire every timer that came due; returns how many."""
        return self.set_time(self.now + seconds)

    def set_time(self, now: float) -> int:
        self.now = now
        fired = 0
        # Timers may arm timers that are already due: fire until quiet.
        while True:
            n = self.broker.on_time(now)
            if not n:
                return fired
            fired += n


class Client:
    """One connection: send frames, read what the session answers."""

    def __init__(self, net: Net, conn_id: int, settings: SessionSettings | None) -> None:
        self.net = net
        self.session = Session(net.broker, conn_id, settings=settings)
        self.decoder = RawFrameDecoder()
        #: Responses (ok/error) by request id, not yet taken by ``result``.
        self.responses: dict[int, dict[str, Any]] = {}
        #: Every other frame received (pushes, id-less errors, bye), in order.
        self.other: list[dict[str, Any]] = []
        self._next_id = 1

    @property
    def conn_id(self) -> int:
        return self.session.conn_id

    # -------------------------------------------------------------- sending

    def next_id(self) -> int:
        rid = self._next_id
        self._next_id += 1
        return rid

    def send(self, op: str, **fields: Any) -> int:
        """Send one request (fields left as given); return its id."""
        rid = fields.pop("id", None)
        if rid is None:
            rid = self.next_id()
        self.send_bytes(pack_frame({"op": op, "id": rid, **fields}))
        return int(rid)

    def send_frame(self, frame: frames.Request) -> int:
        """Send a request dataclass (its ``id`` is used as is)."""
        self.send_bytes(encode(frame))
        return frame.id

    def send_bytes(self, data: bytes) -> None:
        self.session.receive_data(data, self.net.now)
        self.pump()

    # ------------------------------------------------------------ receiving

    def pump(self) -> list[dict[str, Any]]:
        """Parse everything the session has to send; return the frames."""
        data = self.session.data_to_send()
        if not data:
            return []
        self.decoder.receive_data(data)
        received = list(self.decoder.values())
        for frame in received:
            rid = frame.get("id")
            if frame.get("op") in ("ok", "error") and rid is not None:
                assert rid not in self.responses, f"two responses for request {rid}"
                self.responses[rid] = frame
            else:
                self.other.append(frame)
        return received

    def has_response(self, rid: int) -> bool:
        self.pump()
        return rid in self.responses

    def response(self, rid: int) -> dict[str, Any]:
        """The raw response frame of request ``rid`` (AssertionError if none yet)."""
        self.pump()
        assert rid in self.responses, f"no response to request {rid} (yet)"
        return self.responses.pop(rid)

    def result(self, rid: int) -> Any:
        """The result of request ``rid``; an error response is raised as its BrokerError."""
        frame = self.response(rid)
        if frame["op"] == "error":
            raise error_from_code(frame["code"], frame["message"], frame.get("details"))
        return frame.get("result")

    def call(self, op: str, **fields: Any) -> Any:
        """Send a request and return its result at once (raises BrokerError on error)."""
        return self.result(self.send(op, **fields))

    def error(self, op: str, **fields: Any) -> BrokerError:
        """Send a request that must fail; return the error."""
        try:
            result = self.call(op, **fields)
        except BrokerError as exc:
            return exc
        raise AssertionError(f"{op} succeeded with {result!r}, expected an error")

    def close(self) -> None:
        """The connection drops (the shell's connection_lost)."""
        self.session.connection_lost(self.net.now)


def assert_decoders_agree(fast: Any, generic: Any, raw: dict[str, Any]) -> Any:
    """Check a hand-written fast decoder against the generic one on ``raw``:
    the same frame, or the same ``BadRequest`` message. Returns the frame (None if refused)."""
    try:
        expected = generic(raw, "")
    except BadRequest as exc:
        try:
            fast(raw)
        except BadRequest as fast_exc:
            assert fast_exc.message == exc.message
        else:
            raise AssertionError("the fast decoder accepted what the generic one refuses") from None
        return None
    got = fast(raw)
    assert got == expected
    assert type(got) is type(expected)
    return got


class _KeptLog:
    """A MemoryLog that outlives ``close``, so a "restarted" broker finds it again."""

    def __init__(self, opener: MemoryOpener, key: tuple[str, str, str], inner: MemoryLog) -> None:
        self._opener = opener
        self._key = key
        self.inner = inner

    def close(self) -> None:
        pass

    def destroy(self) -> None:
        self._opener.logs.pop(self._key, None)
        self.inner.destroy()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class MemoryOpener:
    """A StorageOpener over memory that survives broker restarts (a fast data directory)."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, str, str], MemoryLog] = {}

    def open(self, namespace: str, kind: str, name: str, *, segment_bytes: int | None) -> LogStore:
        key = (namespace, kind, name)
        log = self.logs.get(key)
        if log is None:
            log = self.logs[key] = MemoryLog(segment_bytes or 64 * 1024 * 1024)
        return _KeptLog(self, key, log)  # type: ignore[return-value]  # duck-typed LogStore

    def existing(self, namespace: str, kind: str) -> list[str]:
        return sorted(n for (ns, k, n) in self.logs if (ns, k) == (namespace, kind))

    def remove(self, namespace: str, kind: str, name: str) -> None:
        self.logs.pop((namespace, kind, name), None)
