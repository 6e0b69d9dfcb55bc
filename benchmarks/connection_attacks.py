"""Connection-level attacks on every port of a real ``minibroker serve``, measured.

Starts the broker (all front ends, tokens on unless ``--no-auth``), then per
attack: the broker's RSS before, during and after (once the attackers left
and the server had its idle second to settle), and the latency of a
legitimate native client (connect + hello + ping) while the attack holds.

    python -m benchmarks.connection_attacks --flood 3000
    python -m benchmarks.connection_attacks --only budget

Not a test: counts here are large, and times depend on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgpack

TOKEN = "s3cret-token"
PROTOCOL_VERSION = 1


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def frame(obj: dict) -> bytes:
    body = msgpack.packb(obj)
    return struct.pack(">I", len(body)) + body


class Broker:
    """A ``minibroker serve`` subprocess and the ports it bound."""

    def __init__(self, auth: bool, extra: list[str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="mb-attacks-")
        args = [
            sys.executable,
            "-m",
            "minibroker",
            "serve",
            "--port",
            "0",
            "--amqp-port",
            "0",
            "--kafka-port",
            "0",
            "--sqs-port",
            "0",
            "--http-port",
            "0",
            *extra,
        ]
        if auth:
            tokens = Path(self.dir, "tokens")
            tokens.write_text(f"alice:{TOKEN}\n")
            keys = Path(self.dir, "keys")
            keys.write_text("AKIDEXAMPLE:secretsecret\n")
            args += ["--auth-file", str(tokens), "--sqs-keys", str(keys)]
        self.auth = auth
        env = dict(os.environ, MINIBROKER_LOG_LEVEL="info")
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
        self.ports: dict[str, int] = {}
        assert self.proc.stderr is not None
        while len(self.ports) < 5:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("broker exited")
            for name, pattern in (
                ("native", r"listening on 127\.0\.0\.1:(\d+) \("),
                ("amqp", r"amqp front end listening on 127\.0\.0\.1:(\d+)"),
                ("kafka", r"kafka front end listening on 127\.0\.0\.1:(\d+)"),
                ("sqs", r"SQS endpoint on http://127\.0\.0\.1:(\d+)"),
                ("http", r"HTTP API on http://127\.0\.0\.1:(\d+)"),
            ):
                m = re.search(pattern, line)
                if m:
                    self.ports[name] = int(m.group(1))
        # Drain stderr in the background so the broker never blocks on it.
        self.log = open(Path(self.dir, "stderr.log"), "w")  # noqa: SIM115
        import threading

        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.write(line)
            self.log.flush()

    @property
    def rss(self) -> float:
        return rss_mib(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def legit_native(broker: Broker, timeout: float = 30.0, payload: int = 0) -> tuple[float, str]:
    """Seconds for connect + hello + ping (with ``payload`` bytes); and the outcome."""
    start = time.perf_counter()
    try:
        s = socket.create_connection(("127.0.0.1", broker.ports["native"]), timeout=timeout)
    except OSError as exc:
        return time.perf_counter() - start, f"connect failed: {exc}"
    try:
        hello = {"op": "hello", "id": 1, "version": PROTOCOL_VERSION, "client": "legit"}
        if broker.auth:
            hello["token"] = TOKEN
        ping = {"op": "ping", "id": 2}
        if payload:
            ping["data"] = b"x" * payload
        s.sendall(frame(hello) + frame(ping))
        unpacked = []
        buf = b""
        while len(unpacked) < 2:
            data = s.recv(1 << 20)
            if not data:
                return time.perf_counter() - start, f"closed after {unpacked}"
            buf += data
            while len(buf) >= 4:
                (n,) = struct.unpack(">I", buf[:4])
                if len(buf) < 4 + n:
                    break
                unpacked.append(msgpack.unpackb(buf[4 : 4 + n]))
                buf = buf[4 + n :]
        ops = [f.get("op") for f in unpacked]
        outcome = (
            "ok"
            if ops == ["ok", "ok"]
            else f"answers {[(f.get('op'), f.get('code')) for f in unpacked]}"
        )
        return time.perf_counter() - start, outcome
    except OSError as exc:
        return time.perf_counter() - start, f"error: {exc}"
    finally:
        s.close()


def open_many(port: int, count: int, first: bytes = b"") -> list[socket.socket]:
    socks = []
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError as exc:
            print(f"    connect {len(socks)} failed: {exc}")
            break
        if first:
            s.sendall(first)
        socks.append(s)
    return socks


def alive(socks: list[socket.socket]) -> int:
    """How many the server has not closed (non-blocking peek)."""
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(1, socket.MSG_PEEK)
            n += bool(data)
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def close_all(socks: list[socket.socket], rst: bool = False) -> None:
    for s in socks:
        if rst:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


def settle(broker: Broker, seconds: float = 4.0) -> float:
    time.sleep(seconds)
    return broker.rss


# ------------------------------------------------------------------ attacks

KAFKA_BIG_PREFIX = struct.pack(">i", 100 * 1024 * 1024 - 1)


def sqs_big_headers(length: int) -> bytes:
    return (
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Authorization: AWS4-HMAC-SHA256 "
        "Credential=AKIDEXAMPLE/20260101/us-east-1/sqs/aws4_request, "
        "SignedHeaders=host, Signature=00\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


FIRST_BYTES: dict[str, bytes] = {
    "native": b"",
    "amqp": b"",
    "kafka": b"",
    "sqs": b"",
    "http": b"",
}


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def attack_flood(broker: Broker, port_name: str, count: int) -> None:
    """``count`` idle connections; a legit client's latency while they are being
    accepted, then RSS once the broker holds them all (or stops taking more)."""
    before = broker.rss
    fds = open_fds(broker.proc.pid)
    t0 = time.perf_counter()
    socks = open_many(broker.ports[port_name], count, FIRST_BYTES[port_name])
    opened = time.perf_counter() - t0
    lat, outcome = legit_native(broker)
    last, stable = -1, 0
    while stable < 3:  # the broker's descriptors stop changing: it has taken them
        time.sleep(0.5)
        now = open_fds(broker.proc.pid)
        stable = stable + 1 if now == last else 0
        last = now
    accepted = last - fds
    during = broker.rss
    lat2, outcome2 = legit_native(broker)
    n_alive = alive(socks)
    close_all(socks)
    after = settle(broker)
    per = (during - before) * 1024 / max(accepted, 1)
    print(
        f"flood {port_name:6} {len(socks):5} idle (sent in {opened:.1f}s; broker holds {accepted}, "
        f"{n_alive} open): RSS {before:.0f} -> {during:.0f} MiB ({per:.1f} KiB/conn) -> "
        f"{after:.0f} after; legit hello+ping during accept {lat * 1000:.0f} ms ({outcome}), "
        f"while held {lat2 * 1000:.0f} ms ({outcome2})"
    )


def attack_budget(broker: Broker, port_name: str, count: int, first: bytes) -> None:
    """Unauthenticated connections declare big frames/bodies, then a legit 2 MiB ping."""
    before = broker.rss
    socks = open_many(broker.ports[port_name], count, first)
    time.sleep(1.0)
    lat, outcome = legit_native(broker, timeout=20, payload=2 * 1024 * 1024)
    n_alive = alive(socks)
    close_all(socks)
    after = settle(broker)
    print(
        f"budget {port_name:6} {count:3} pre-auth claims: "
        f"legit 2 MiB ping {lat * 1000:.0f} ms: {outcome}; "
        f"{n_alive} attackers alive; RSS {before:.0f} -> {after:.0f}"
    )


def attack_slowloris(broker: Broker, port_name: str, payload: bytes, seconds: float) -> None:
    """One byte per second; does the server cut it, and when?"""
    s = socket.create_connection(("127.0.0.1", broker.ports[port_name]))
    s.settimeout(1.0)
    start = time.perf_counter()
    i = 0
    reason = "still open"
    while time.perf_counter() - start < seconds:
        try:
            s.sendall(payload[i % len(payload) : i % len(payload) + 1])
        except OSError as exc:
            reason = f"send failed ({exc.__class__.__name__})"
            break
        i += 1
        try:
            data = s.recv(65536)
            if not data:
                reason = "closed (EOF)"
                break
            reason = f"answered {data[:60]!r}"
        except TimeoutError:
            continue
        except OSError as exc:
            reason = f"closed ({exc.__class__.__name__})"
            break
    print(f"slowloris {port_name:6}: {reason} after {time.perf_counter() - start:.1f}s, {i} bytes")
    s.close()


def amqp_header() -> bytes:
    return b"AMQP\x00\x00\x09\x01"


def kafka_api_versions() -> bytes:
    body = struct.pack(">hhih", 18, 0, 1, 4) + b"test"
    return struct.pack(">i", len(body)) + body


def http_get() -> bytes:
    return b"GET /api/v1/queues HTTP/1.1\r\nHost: x\r\n\r\n"


ATTACKS: dict[str, Callable[[Broker, argparse.Namespace], None]] = {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flood", type=int, default=2000)
    parser.add_argument("--no-auth", action="store_true")
    parser.add_argument("--only", default="flood,budget,slowloris")
    parser.add_argument("--slow-seconds", type=float, default=14.0)
    parser.add_argument("--serve-args", default="")
    args = parser.parse_args()
    broker = Broker(not args.no_auth, args.serve_args.split())
    try:
        time.sleep(2)
        print(
            f"auth={'on' if broker.auth else 'off'} ports={broker.ports} "
            f"idle RSS {broker.rss:.0f} MiB"
        )
        lat, outcome = legit_native(broker)
        print(f"baseline legit hello+ping {lat * 1000:.1f} ms: {outcome}")
        only = args.only.split(",")
        if "flood" in only:
            for name in ("native", "amqp", "kafka", "sqs", "http"):
                attack_flood(broker, name, args.flood)
        if "budget" in only:
            attack_budget(broker, "kafka", 3, KAFKA_BIG_PREFIX)
            attack_budget(broker, "sqs", 40, sqs_big_headers(8 * 1024 * 1024))
        if "slowloris" in only:
            hello = frame({"op": "hello", "id": 1, "version": PROTOCOL_VERSION, "client": "slow"})
            attack_slowloris(broker, "native", hello, args.slow_seconds)
            attack_slowloris(broker, "amqp", amqp_header(), args.slow_seconds)
            attack_slowloris(broker, "kafka", kafka_api_versions(), args.slow_seconds)
            attack_slowloris(broker, "sqs", sqs_big_headers(10), args.slow_seconds)
            attack_slowloris(broker, "http", http_get(), args.slow_seconds)
        if "http-slowloris" in only:
            attack_slowloris(broker, "http", http_get(), 90)
        print(f"final RSS {broker.rss:.0f} MiB; log: {broker.dir}/stderr.log")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
