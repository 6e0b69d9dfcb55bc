"""Hostile input through a live ``minibroker serve``: the broker stays up, other
clients are unaffected, memory stays bounded, and each offender gets a clear
error or a closed connection.

Hypothesis generates frames for every op with wrong types, huge and negative
numbers, NaN and infinities, odd unicode and nested junk, plus random bytes;
hand-made frames cover what Hypothesis rarely finds: msgpack headers
claiming billions of elements, nesting 100,000 deep, a length prefix of 4 GB.
After each kind of abuse a well-behaved client checks that the broker still
does its job.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import WireClient

import minibroker
from benchmarks.broker_process import BrokerProcess
from minibroker.errors import ERRORS_BY_CODE
from minibroker.protocol import frames
from minibroker.protocol.frame_class import fields

pytestmark = pytest.mark.slow

MAX_FRAME = 1 << 20
#: Resident memory the server may gain over the whole module: generous for
#: allocator noise, tiny next to what any of the attacks could make it hold
#: without its limits (gigabytes).
RSS_GROWTH_LIMIT = 200 * 1024 * 1024
CODES = set(ERRORS_BY_CODE)
FULLWIDTH = "\uff4a\uff4f\uff42\uff53"  # "jobs" in fullwidth letters


class Target:
    """The server under attack, and a control client that must keep working."""

    def __init__(self, server: BrokerProcess) -> None:
        self.server = server
        self.port = server.port
        self.rss_start = server.rss_bytes()
        self._client: WireClient | None = None
        self._ids = iter(range(1_000_000, 1 << 62))

    def client(self) -> WireClient:
        """A long-lived abusive connection; reopened after the server closes it."""
        if self._client is None or self._client.eof:
            self._client = WireClient(self.port)
            self._client.hello(namespace="hostile")
        return self._client

    def drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def next_id(self) -> int:
        return next(self._ids)

    def check_healthy(self) -> None:
        assert self.server.alive(), self.server.log_text()
        with minibroker.connect_sync(f"{self.server.url}?namespace=control") as mb:
            mb.declare_queue("control")
            mb.put("control", b"still working")
            (delivery,) = mb.fetch("control", max_messages=1)
            assert delivery.body == b"still working"
            mb.ack(delivery)
        growth = self.server.rss_bytes() - self.rss_start
        assert growth < RSS_GROWTH_LIMIT, f"server RSS grew by {growth >> 20} MiB"
        assert not self.server.lines_matching("Traceback|internal error"), self.server.log_text()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data_dir = tmp_path_factory.mktemp("hostile") / "data"
    server = BrokerProcess.start(
        data_dir, "--max-frame-bytes", str(MAX_FRAME), "--hello-timeout", "5"
    )
    try:
        yield Target(server)
    finally:
        server.stop()


# ---------------------------------------------------------------- strategies

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)),  # msgpack cannot carry surrogates
    max_size=40,
)
_ints = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([0, -1, 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]),
)
_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, 1e-300, 1e300, float("nan"), float("inf")]),
)
#: Names that have tripped brokers: wildcards, dots, bidi overrides, fullwidth
#: letters, over-long, path-like, NUL.
ODD_NAMES = ["#", "*", "a..b", ".", "a.*.#", "\u202e", FULLWIDTH, "x" * 300, "é/..", "nul\x00"]
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    _ints,
    _floats,
    _text,
    st.binary(max_size=64),
    st.sampled_from(ODD_NAMES),
)
# NaN keys are fine on the wire but useless in a dict (NaN != NaN).
_keys = _scalars.filter(lambda k: not isinstance(k, float) or k == k)
_junk = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)
_plausible: dict[str, Any] = {
    "queue": st.sampled_from(["h.q", "h.q2", "h.dlq"]),
    "topic": st.sampled_from(["h.t", "h.t.x"]),
    "pattern": st.sampled_from(["h.#", "h.*", "#"]),
    "log": st.sampled_from(["h.log"]),
    "subject": st.sampled_from(["h.svc"]),
    "messages": st.lists(st.fixed_dictionaries({"body": st.binary(max_size=32)}), max_size=3),
    "records": st.lists(st.fixed_dictionaries({"body": st.binary(max_size=32)}), max_size=3),
}


@st.composite
def request_frames(draw: st.DrawFn) -> dict[Any, Any]:
    op = draw(st.one_of(st.sampled_from(sorted(frames.REQUESTS)), _text))
    frame: dict[Any, Any] = {"op": op}
    frame["id"] = draw(st.one_of(st.integers(0, 2**32), _junk))
    cls = frames.REQUESTS.get(op)
    if cls is not None:
        for name in [f.name for f in fields(cls)]:
            if name == "id" or draw(st.integers(0, 4)) == 0:
                continue  # sometimes leave a field out
            if name in _plausible and draw(st.booleans()):
                frame[name] = draw(_plausible[name])
            else:
                frame[name] = draw(_junk)
    if op == "hello" or (cls is frames.Hello):
        frame["op"] = "ping"  # a second hello only closes nothing; keep the connection busy
    for key, value in draw(st.dictionaries(_text, _junk, max_size=2)).items():
        frame.setdefault(key, value)
    return frame


# -------------------------------------------------------------------- tests


@settings(
    max_examples=max(300, settings.default.max_examples),
    suppress_health_check=list(HealthCheck),
    deadline=None,
)
@given(frame=request_frames())
def test_generated_frames(target: Target, frame: dict[Any, Any]) -> None:
    client = target.client()
    probe = target.next_id()
    client.send(frame, {"op": "ping", "id": probe, "data": b"probe"})
    request_id = frame.get("id")
    answered: dict[str, Any] | None = None
    while True:
        reply = client.receive_one()
        if reply.get("op") in ("ok", "error") and reply.get("id") == probe:
            break
        if reply.get("op") == "error":
            assert reply["code"] in CODES, reply
            assert isinstance(reply["message"], str) and reply["message"]
        if reply.get("id") == request_id and reply.get("op") in ("ok", "error"):
            answered = reply
    assert reply["op"] == "ok" and reply["result"] == b"probe"
    if type(request_id) is int and 0 <= request_id != probe and frame.get("op") not in (
        "fetch",
        "read",
        "request",
    ):
        # Everything that is not a long poll answers in order, before the probe.
        assert answered is not None, frame


def test_generated_frames_left_the_broker_healthy(target: Target) -> None:
    target.drop_client()
    target.check_healthy()


@settings(
    max_examples=max(100, settings.default.max_examples),
    suppress_health_check=list(HealthCheck),
    deadline=None,
)
@given(data=st.binary(min_size=1, max_size=4096), after_hello=st.booleans())
def test_random_bytes(target: Target, data: bytes, after_hello: bool) -> None:
    client = WireClient(target.port)
    try:
        if after_hello:
            client.hello()
        client.send_bytes(data)
        client.sock.shutdown(1)  # no more input: the server answers what it can and closes
        for frame in client.until_eof():
            assert frame.get("op") in ("ok", "error", "bye"), frame
            if frame["op"] != "ok":
                assert frame["code"] in CODES, frame
    finally:
        client.close()


def test_random_bytes_left_the_broker_healthy(target: Target) -> None:
    target.check_healthy()


def _closed_with(target: Target, raw: bytes, code: str, *, hello: bool = True) -> None:
    client = WireClient(target.port)
    try:
        if hello:
            client.hello()
        client.send_bytes(raw)
        frames_ = client.until_eof()
    finally:
        client.close()
    assert frames_ and frames_[-1]["op"] == "error" and "id" not in frames_[-1], frames_
    assert frames_[-1]["code"] == code, frames_


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("map claiming 4 billion entries", b"\xdf\xff\xff\xff\xff"),
        ("array claiming 4 billion items", b"\xdd\xff\xff\xff\xff\x01\x02"),
        ("str claiming 4 GB", b"\xdb\xff\xff\xff\xffabc"),
        ("bin claiming 4 GB", b"\xc6\xff\xff\xff\xffabc"),
        ("nested 100,000 deep", b"\x91" * 100_000 + b"\xc0"),
        ("map nested 100,000 deep", b"\x81\xa1k" * 100_000 + b"\xc0"),
        ("two values", b"\x80\x80"),
        ("not a map", b"\x93\x01\x02\x03"),
        ("map with a map key", b"\x81\x80\x01"),
        ("invalid utf-8", b"\x81\xa2op\xa2\xff\xfe"),
        ("reserved byte", b"\xc1"),
    ],
)
def test_malformed_msgpack_closes_with_bad_frame(target: Target, name: str, body: bytes) -> None:
    if len(body) > MAX_FRAME:
        pytest.skip("over the frame limit")
    _closed_with(target, struct.pack(">I", len(body)) + body, "bad_frame")


@pytest.mark.parametrize("length", [MAX_FRAME + 1, 2**31, 2**32 - 1])
def test_oversized_length_prefix_is_refused_before_the_body(target: Target, length: int) -> None:
    # Only the prefix and a few bytes are sent: the server must not wait for 4 GB.
    _closed_with(target, struct.pack(">I", length) + b"\x80" * 16, "too_large")


@pytest.mark.parametrize(
    "fields",
    [
        {"op": "fetch", "queue": "h.big", "max_messages": 2**63 - 1},
        {"op": "fetch", "queue": "h.big", "max_messages": -1},
        {"op": "fetch", "queue": "h.big", "wait": float("nan")},
        {"op": "fetch", "queue": "h.big", "wait": float("inf")},
        {"op": "fetch", "queue": "h.big", "wait": -5.0},
        {"op": "fetch", "queue": "h.big", "visibility_timeout": 1e308},
        {"op": "queue.declare", "queue": "h.bad", "max_length": -1},
        {"op": "queue.declare", "queue": "h.bad", "visibility_timeout": float("nan")},
        {"op": "queue.declare", "queue": "h.bad", "message_ttl": -1.0},
        {"op": "queue.declare", "queue": "h.bad", "max_deliveries": 2**64 - 1},
        {"op": "queue.declare", "queue": "h.bad/../../etc", "durable": True},
        {"op": "queue.declare", "queue": "\u202eevil", "durable": True},
        {"op": "queue.inspect", "queue": "h.big", "limit": 2**63},
        {"op": "nack", "queue": "h.big", "deliveries": [1], "delay": float("-inf")},
        {"op": "ack", "queue": "h.big", "deliveries": list(range(100_000))},
        {"op": "subscribe", "pattern": "h.#", "buffer": 2**63},
        {"op": "subscribe", "pattern": "h.#", "buffer": -1},
        {"op": "subscribe", "pattern": "#." * 200 + "#"},
        {"op": "log.create", "log": "h.bad", "segment_bytes": 1},
        {"op": "log.create", "log": "h.bad", "retention_seconds": float("nan")},
        {"op": "read", "log": "h.log", "start": 2**63 - 1},
        {"op": "read", "log": "h.log", "start": -(2**63)},
        {"op": "read", "log": "h.log", "max_bytes": 2**63, "max_records": 2**63},
        {"op": "read", "log": "h.log", "timestamp_ms": -(2**63)},
        {"op": "read", "log": "h.log", "start": "yesterday"},
        {"op": "commit", "log": "h.log", "group": "g", "offset": -1},
        {"op": "commit", "log": "h.log", "group": "g", "offset": 2**63},
        {"op": "request", "subject": "h.svc", "timeout": float("nan")},
        {"op": "request", "subject": "h.svc", "timeout": 1e308},
        {"op": "reply", "rid": 2**64 - 1, "body": b"x"},
        {"op": "unsubscribe", "sub": -1},
        {"op": "ping", "data": b"\x00" * (MAX_FRAME - 64)},
    ],
)
def test_out_of_range_values_get_a_clear_error(target: Target, fields: dict[str, Any]) -> None:
    client = target.client()
    request_id = target.next_id()
    client.send({"id": request_id, **fields})
    answer = client.response(request_id)
    if answer["op"] == "error":
        assert answer["code"] in CODES - {"internal"}, answer
        assert answer["message"], answer
    assert client.ping(target.next_id(), b"alive")


def test_hand_made_input_left_the_broker_healthy(target: Target) -> None:
    target.drop_client()
    target.check_healthy()


def test_odd_names_stay_inside_the_data_directory(target: Target, tmp_path: Path) -> None:
    """Queue and log names are file names on disk: none may escape the data directory."""
    names = ["..", ".", "../x", "a/../../b", "..%2F", "%2e%2e", FULLWIDTH, "con", "a" * 255, "é"]
    with minibroker.connect_sync(f"{target.server.url}?namespace=files") as mb:
        for name in names:
            try:
                mb.declare_queue(name, durable=True)
                mb.put(name, b"x")
                mb.create_log(name)
                mb.append(name, b"x")
            except minibroker.BrokerError as exc:
                assert exc.code == "invalid_name", (name, exc)
    data_dir = Path(target.server.log_text().split("data_dir=")[1].split(",")[0])
    for path in data_dir.parent.rglob("*"):
        assert data_dir in path.parents or path == data_dir, path
