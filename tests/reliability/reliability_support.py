"""Helpers for the reliability tests: a blocking wire client and data-directory surgery."""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minibroker.log_store import Record
from minibroker.protocol.codec import RawFrameDecoder, pack_frame
from minibroker.protocol.frames import PROTOCOL_VERSION
from minibroker.record_format import BATCH_HEADER_SIZE, decode_records, entries_records
from minibroker.storage.batch import parse_batch_header, scan_batches


def hello_frame(request_id: int = 1, **fields: Any) -> dict[str, Any]:
    return {"op": "hello", "id": request_id, "version": PROTOCOL_VERSION, "client": "raw", **fields}


class WireClient:
    """A blocking socket speaking raw frames: send anything, see every frame back.

    Receives block with a timeout (a hung server fails the test instead of
    hanging it); nothing here sleeps.
    """

    def __init__(self, port: int, timeout: float = 20.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.decoder = RawFrameDecoder(1 << 30)
        self.pending: list[Any] = []
        self.eof = False

    def send(self, *frames: dict[str, Any]) -> None:
        self.sock.sendall(b"".join(pack_frame(f) for f in frames))

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.decoder.receive_data(data)
        self.pending.extend(self.decoder.values())
        return True

    def receive_one(self) -> dict[str, Any]:
        while not self.pending:
            assert self._fill(), "the server closed the connection"
        frame: dict[str, Any] = self.pending.pop(0)
        return frame

    def response(self, request_id: int) -> dict[str, Any]:
        """The ok/error answering ``request_id``; pushes and other answers are skipped."""
        while True:
            frame = self.receive_one()
            if frame.get("id") == request_id and frame.get("op") in ("ok", "error"):
                return frame

    def until_eof(self) -> list[dict[str, Any]]:
        while self._fill():
            pass
        out, self.pending = self.pending, []
        return out

    def hello(self, **fields: Any) -> dict[str, Any]:
        self.send(hello_frame(**fields))
        answer = self.response(1)
        assert answer["op"] == "ok", answer
        return answer

    def ping(self, request_id: int, data: bytes = b"") -> bool:
        """True if the connection still answers a ping (False once it is closed)."""
        try:
            self.send({"op": "ping", "id": request_id, "data": data})
            return self.response(request_id)["result"] == data
        except (AssertionError, OSError):
            return False

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------- data directories


@dataclass
class StoreFile:
    """One segment file of a store, with the records it held before any damage."""

    path: Path
    records: list[Record]
    #: Byte position where the batch holding each record ends: the record
    #: survives damage at or after that byte, and goes with its batch otherwise.
    ends: list[int]


def store_files(store_dir: Path) -> list[StoreFile]:
    """The segment files of a store directory, oldest first, decoded."""
    files = []
    for path in sorted(store_dir.glob("*.log")):
        data = path.read_bytes()
        scan = scan_batches(data)
        assert scan.valid_bytes == len(data), f"{path} is not pristine"
        records: list[Record] = []
        ends: list[int] = []
        units: list[tuple[int, list[int] | int]] = [*scan.batches, *scan.units]
        for position, sizes in sorted(units, key=lambda unit: unit[0]):
            if isinstance(sizes, int):  # a batch of entries (how appends are stored)
                header = parse_batch_header(data, position)
                assert header is not None
                start = position + BATCH_HEADER_SIZE
                end = start + header[1]
                records += entries_records(data[start:end])
                ends += [end] * sizes
                continue
            end = position + sum(sizes)
            records += decode_records(data[position:end])
            ends += [end] * len(sizes)
        files.append(StoreFile(path, records, ends))
    return files


@dataclass
class Fault:
    """Damage to one file: ``truncate`` it to ``position`` or ``flip`` a bit there."""

    kind: str
    path: Path
    position: int
    bit: int = 0

    def apply(self) -> None:
        if self.kind == "truncate":
            with self.path.open("r+b") as fh:
                fh.truncate(self.position)
        else:
            data = bytearray(self.path.read_bytes())
            data[self.position] ^= 1 << self.bit
            self.path.write_bytes(bytes(data))


def random_fault(kind: str, files: list[StoreFile], rng: random.Random) -> Fault:
    target = rng.choice([f for f in files if f.ends])
    size = target.ends[-1]
    position = rng.randrange(size) if kind == "flip" else rng.randrange(size + 1)
    return Fault(kind, target.path, position, rng.randrange(8))


def surviving(files: list[StoreFile], fault: Fault) -> list[Record]:
    """The records recovery must keep: the whole batches before the damaged one.

    Every record of the files before the damaged one, then the records of the
    damaged file whose batches end at or before the damage; nothing after it
    (offsets must stay dense, so later segments go too).
    """
    kept: list[Record] = []
    for store_file in files:
        if store_file.path != fault.path:
            kept.extend(store_file.records)
            continue
        count = sum(1 for end in store_file.ends if end <= fault.position)
        kept.extend(store_file.records[:count])
        return kept
    raise AssertionError(f"{fault.path} is not one of the store's files")
