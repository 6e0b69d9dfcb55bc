"""The request/reply fast paths (``minibroker/protocol/handlers/rpc.py::FAST_OPS``)
answer exactly what the generic decode + dispatch answers.

The property test runs the same random script (``request`` and ``reply``
frames of every shape, good and bad, several per chunk, from the right and
the wrong connections, a connection that never said hello, a responder
vanishing mid-request, deadlines passing, with and without a permissions
file) through sessions with the fast paths and through sessions without
them, and compares every byte each session writes and the router's state
after every step. The other tests pin that the fast paths are taken for
the frames the clients send, and that they leave the x-ray to the generic
path.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minibroker.core.rpc as rpc_core
from minibroker.access.auth import Authenticator
from minibroker.access.permissions import Permissions
from minibroker.core.broker import Broker
from minibroker.core.xray import Xray
from minibroker.protocol import handlers
from minibroker.protocol.codec import RawFrameDecoder, pack_frame
from minibroker.protocol.frames import PROTOCOL_VERSION
from minibroker.protocol.handlers.rpc import FAST_OPS, fast_reply, fast_request
from minibroker.protocol.session import Session

PERMISSIONS = "allow anonymous read,write subject:svc.a\nallow anonymous write subject:svc.b\n"

junk = st.none() | st.booleans() | st.integers(-2, 3) | st.text(max_size=2) | st.binary(max_size=2)
ids = st.integers(0, 6) | junk
bodies = st.binary(max_size=6) | junk
headers = (
    st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2)
    | st.dictionaries(st.text(max_size=2), st.integers(-5, 5), min_size=1, max_size=1)
    | junk
)
timeouts = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0.5, 5.0, 30.0, 0.0, -1.0, 1e9])
    | junk
)
subjects = st.sampled_from(["svc.a", "svc.b", "svc.c", "bad name", "svc.*", ""]) | junk

request_frame = st.fixed_dictionaries(
    {"op": st.just("request"), "id": ids},
    optional={"subject": subjects, "body": bodies, "headers": headers, "timeout": timeouts},
)
#: ``rid`` ("seen", n): the n-th rid pushed so far (the same in both runs).
reply_frame = st.fixed_dictionaries(
    {"op": st.just("reply"), "id": ids, "rid": st.tuples(st.just("seen"), st.integers(0, 9))},
    optional={
        "body": bodies,
        "headers": headers,
        "error": st.none() | st.text(max_size=3) | st.integers(0, 1),
        "confirm": st.sampled_from([False, True, 0, None]),
        "x": junk,
    },
) | st.fixed_dictionaries({"op": st.just("reply"), "id": ids, "rid": junk})
#: The shapes the clients send (the fast paths' own), so that most steps exercise them.
client_request = st.fixed_dictionaries(
    {
        "op": st.just("request"),
        "id": st.integers(0, 6),
        "subject": st.sampled_from(["svc.a", "svc.b", "svc.c", "bad name"]),
        "body": st.binary(max_size=4),
        "timeout": st.sampled_from([0.5, 5.0, 6.5, 5, 0, 10**12]),
    },
    optional={"headers": st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2)},
)
client_reply = st.fixed_dictionaries(
    {
        "op": st.just("reply"),
        "id": st.integers(0, 6),
        "rid": st.tuples(st.just("seen"), st.integers(0, 9)),
        "body": st.binary(max_size=4),
        "confirm": st.just(False),
    },
    optional={"error": st.text(max_size=3)},
)
frame = client_request | client_reply | request_frame | reply_frame
#: Who sends: the requester, either responder, or a connection without hello.
sender = st.sampled_from(["requester", "requester", "responder1", "responder2", "stranger"])
step = (
    st.tuples(st.just("send"), sender, st.lists(frame, min_size=1, max_size=3))
    | st.tuples(st.just("advance"), st.sampled_from([0.1, 1.0, 6.0]), st.just([]))
    | st.tuples(st.just("lose"), st.sampled_from(["responder1", "responder2"]), st.just([]))
)


def _run(script: list[Any], *, fast: bool, permissions: str | None) -> list[Any]:
    """Play ``script``; return everything observable after each step."""
    saved = rpc_core._rids
    rpc_core._rids = itertools.count(1)  # the same rids in both runs
    try:
        broker = Broker()
        auth = Authenticator(
            permissions=None if permissions is None else Permissions.parse(permissions)
        )
        names = ["requester", "responder1", "responder2", "stranger"]
        sessions = {name: Session(broker, n, auth=auth) for n, name in enumerate(names, 1)}
        for name, session in sessions.items():
            if not fast:
                session.fast_ops = {}
            if name != "stranger":
                hello = {"op": "hello", "id": 99, "version": PROTOCOL_VERSION, "client": "t"}
                session.receive_data(pack_frame(hello), 0.0)
        for name in ("responder1", "responder2"):
            respond = {"op": "respond", "id": 98, "subject": "svc.a"}
            sessions[name].receive_data(pack_frame(respond), 0.0)
        decoder = RawFrameDecoder()
        seen: list[int] = []
        now = 1.0
        observed: list[Any] = []
        for kind, who, frames_ in script:
            if kind == "advance":
                now += who
                broker.on_time(now)
            elif kind == "lose":
                sessions[who].connection_lost(now)
            else:
                chunk = b"".join(pack_frame(_resolve(f, seen)) for f in frames_)
                sessions[who].receive_data(chunk, now)
            out = {name: s.data_to_send() for name, s in sessions.items()}
            for name in ("responder1", "responder2"):
                decoder.receive_data(out[name])
                for value in decoder.values():
                    if value.get("op") == "req":
                        seen.extend(r["rid"] for r in value["requests"])
            router = sessions["requester"].ns.rpc
            observed.append(
                (
                    out,
                    router.snapshot(),
                    sorted(router.pending_rids()),
                    dict(router.stats.outcomes),
                    router.stats.replies_dropped,
                    {name: s.stats.frames_in for name, s in sessions.items()},
                    {name: dict(s.stats.errors) for name, s in sessions.items()},
                )
            )
        return observed
    finally:
        rpc_core._rids = saved


def _resolve(frame: dict[str, Any], seen: list[int]) -> dict[str, Any]:
    rid = frame.get("rid")
    if type(rid) is tuple:
        frame = {**frame, "rid": seen[rid[1] % len(seen)] if seen else 12345}
    return frame


@pytest.mark.parametrize("permissions", [None, PERMISSIONS])
@settings(max_examples=100, deadline=None)
@given(script=st.lists(step, min_size=1, max_size=12))
def test_fast_paths_answer_what_the_generic_path_answers(
    permissions: str | None, script: list[Any]
) -> None:
    assert _run(script, fast=True, permissions=permissions) == _run(
        script, fast=False, permissions=permissions
    )


def _pair(permissions: str | None = None) -> tuple[Broker, Session, Session]:
    broker = Broker()
    auth = Authenticator(
        permissions=None if permissions is None else Permissions.parse(permissions)
    )
    requester, responder = Session(broker, 1, auth=auth), Session(broker, 2, auth=auth)
    for session in (requester, responder):
        hello = {"op": "hello", "id": 1, "version": PROTOCOL_VERSION}
        session.receive_data(pack_frame(hello), 0.0)
        session.data_to_send()
    responder.receive_data(pack_frame({"op": "respond", "id": 2, "subject": "svc.a"}), 0.0)
    responder.data_to_send()
    return broker, requester, responder


def _rid(responder: Session) -> int:
    decoder = RawFrameDecoder()
    decoder.receive_data(responder.data_to_send())
    (push,) = decoder.values()
    rid: int = push["requests"][0]["rid"]
    return rid


def test_the_clients_frames_take_the_fast_paths() -> None:
    """What the clients send (an unconfirmed reply, a float timeout) is taken,
    so the property test above compares the fast paths, not the generic one twice."""
    assert Session.fast_ops is FAST_OPS
    _, requester, responder = _pair()
    request = {"op": "request", "id": 5, "subject": "svc.a", "body": b"hi", "timeout": 5.0}
    assert fast_request(requester, request, 1.0)
    rid = _rid(responder)
    reply = {"op": "reply", "id": 3, "rid": rid, "body": b"HI", "confirm": False}
    assert fast_reply(responder, reply, 1.0)
    decoder = RawFrameDecoder()
    decoder.receive_data(requester.data_to_send())
    assert list(decoder.values()) == [{"op": "ok", "id": 5, "result": {"body": b"HI"}}]
    assert responder.data_to_send() == b""
    # ``request(..., timeout=5)`` sends an integer, which the generic decoder
    # turns into 5.0: taken too.
    assert fast_request(requester, {**request, "id": 6, "timeout": 5}, 1.0)
    assert _rid(responder) > rid


def test_permissions_are_checked_on_the_fast_path() -> None:
    _, requester, _ = _pair("allow anonymous read subject:svc.a\n")
    request = {"op": "request", "id": 5, "subject": "svc.a", "body": b"hi", "timeout": 5.0}
    assert fast_request(requester, request, 1.0)  # taken, and refused
    decoder = RawFrameDecoder()
    decoder.receive_data(requester.data_to_send())
    (answer,) = decoder.values()
    assert (answer["op"], answer["id"], answer["code"]) == ("error", 5, "forbidden")
    assert list(requester.ns.rpc.pending_rids()) == []


def test_a_responder_vanishing_mid_request_fails_the_fast_request() -> None:
    _, requester, responder = _pair()
    request = {"op": "request", "id": 5, "subject": "svc.a", "body": b"hi", "timeout": 5.0}
    requester.receive_data(pack_frame(request), 1.0)
    _rid(responder)  # pushed: the responder holds it
    responder.connection_lost(1.5)
    decoder = RawFrameDecoder()
    decoder.receive_data(requester.data_to_send())
    (answer,) = decoder.values()
    assert (answer["op"], answer["id"], answer["code"]) == ("error", 5, "responder_gone")


def test_the_xray_sees_requests_through_the_generic_path() -> None:
    broker, requester, responder = _pair()
    broker.xray = Xray(lambda: 0.0, "svc.#")
    request = {"op": "request", "id": 5, "subject": "svc.a", "body": b"hi", "timeout": 5.0}
    assert not fast_request(requester, request, 1.0)  # left to the generic path
    requester.receive_data(pack_frame(request), 1.0)
    assert [t.to_dict()["op"] for t in broker.xray.traces] == ["request"]
    assert _rid(responder) > 0


def test_fast_paths_are_registered_for_request_and_reply_only() -> None:
    assert set(FAST_OPS) == {"request", "reply"}
    assert handlers.rpc.FAST_OPS is FAST_OPS
