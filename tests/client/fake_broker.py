"""A scripted stand-in for the broker, for client tests the real broker cannot stage.

The real server never sends a subscription's first pushes in the same TCP
segment as the reply that created it on purpose, never stops mid-chunk and
never answers a made-up op; a client must cope with all of it anyway. This
server speaks the wire format (length-prefixed msgpack) and does what each
request tells it:

* ``hello`` -> ``ok`` (``token == "bad"``: an ``unauthorized`` error, then close);
* ``ping`` -> ``ok`` echoing ``data``; ``unsubscribe`` -> ``ok``;
* ``script`` -> ``ok`` with ``result`` (unless ``reply`` is false), followed in
  the SAME ``sendall`` by every frame in ``send``; then closes the connection
  if ``close`` is true;
* anything else is recorded and never answered (a call that stays pending).

Tests can also push frames later with ``send`` and cut the connection with
``drop``. A pushed ``msg`` frame may carry ``items`` (any msgpack values)
instead of ``messages``: it goes out as a real ``msg`` frame, one message per
item holding the item, and :func:`items_parser` gives the items back.
Every request received is recorded; ``wait_for(op)`` blocks (with a safety
timeout) until one with that op has arrived.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import Any

from minibroker.protocol import frames
from minibroker.protocol.codec import RawFrameDecoder, pack_frame


class FakeBroker:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"minibroker://127.0.0.1:{self.port}"
        self._connections: list[socket.socket] = []
        self._received: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closing = False
        accept = threading.Thread(target=self._accept_loop, name="fake-broker", daemon=True)
        accept.start()
        self._threads.append(accept)

    # ------------------------------------------------------------ test side

    def wait_for(self, op: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until ``count`` requests with ``op`` have arrived; return them all."""
        with self._changed:
            ok = self._changed.wait_for(lambda: len(self.received(op)) >= count, timeout)
            assert ok, f"the fake broker never received {count} {op!r} request(s)"
            return self.received(op)

    def received(self, op: str) -> list[dict[str, Any]]:
        return [frame for frame in list(self._received) if frame.get("op") == op]

    def wait_for_connections(self, count: int, timeout: float = 10.0) -> None:
        with self._changed:
            ok = self._changed.wait_for(lambda: len(self._connections) >= count, timeout)
            assert ok, "the client never connected"

    def send(self, *frames: dict[str, Any]) -> None:
        """Send ``frames`` in one write on the most recent connection."""
        self._connections[-1].sendall(b"".join(_pack_push(f) for f in frames))

    def send_raw(self, data: bytes) -> None:
        """Send arbitrary bytes (garbage, partial frames) on the most recent connection."""
        self._connections[-1].sendall(data)

    def drop(self) -> None:
        """Cut every connection at once, without a goodbye."""
        for conn in list(self._connections):
            _close(conn)

    def stop(self) -> None:
        self._closing = True
        self.drop()
        _close(self._listener)
        for thread in self._threads:
            thread.join(timeout=10)

    # ----------------------------------------------------------- server side

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._changed:
                self._connections.append(conn)
                self._changed.notify_all()
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        decoder = RawFrameDecoder()
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                decoder.receive_data(data)
                for frame in decoder.values():
                    with self._changed:
                        self._received.append(frame)
                        self._changed.notify_all()
                    if not self._answer(conn, frame):
                        return
        except OSError:
            return
        finally:
            _close(conn)

    def _answer(self, conn: socket.socket, frame: dict[str, Any]) -> bool:
        """Answer one request; False once the connection should close."""
        op, request_id = frame.get("op"), frame.get("id")
        if op == "hello":
            if frame.get("token") == "bad":
                conn.sendall(
                    pack_frame(
                        {"op": "error", "id": request_id, "code": "unauthorized", "message": "no"}
                    )
                )
                return False
            info = {"server": "fake", "namespace": frame.get("namespace") or ""}
            conn.sendall(pack_frame({"op": "ok", "id": request_id, "result": info}))
        elif op == "ping":
            conn.sendall(pack_frame({"op": "ok", "id": request_id, "result": frame.get("data")}))
        elif op == "unsubscribe":
            conn.sendall(pack_frame({"op": "ok", "id": request_id, "result": None}))
        elif op == "script":
            out = []
            if frame.get("reply", True):
                reply = {"op": "ok", "id": request_id, "result": frame.get("result")}
                out.append(pack_frame(reply))
            out.extend(_pack_push(f) for f in frame.get("send", []))
            if out:
                conn.sendall(b"".join(out))
            return not frame.get("close", False)
        return True


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _pack_push(frame: dict[str, Any]) -> bytes:
    """``frame`` as bytes; the ``items`` of a ``msg`` become its messages' bodies."""
    if frame.get("op") == "msg" and "items" in frame:
        messages = [{"topic": "fake", "body": json.dumps(item).encode()} for item in frame["items"]]
        frame = {"op": "msg", "sub": frame["sub"], "messages": messages}
    return pack_frame(frame)


def items_parser(frame: frames.Msg, client: object) -> list[Any]:
    """The push parser the tests subscribe with: the ``items`` a ``msg`` frame was sent with."""
    return [json.loads(message.body) for message in frame.messages]


def script(
    result: Any = None, send: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    """Fields of a ``script`` call (see the module docstring)."""
    return {"result": result, "send": send or [], **extra}
