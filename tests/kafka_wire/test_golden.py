"""Golden bytes: one request and its exact answer for every implemented (API, version).

``golden.json`` holds, per ``"<api key>.<version>"``, a request frame (made
with kio from the representative requests of test_session.py) and the
response frame minibroker sent for it on a fresh broker (topic ``t`` with
two records, a group ``g`` of one, the clock at 0). The answers were checked
against the real clients (test_clients.py) when recorded; this test pins
them byte for byte, so any change to what goes on the wire shows up here.

After an intended change, regenerate with
``KAFKA_GOLDEN_UPDATE=1 pytest tests/kafka_wire/test_golden.py`` and review
the diff of golden.json.

Static membership (KIP-345) has exchanges of its own, keyed
``"<api key>.<version>.<case>"`` (:data:`STATIC`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kafka_wire.test_session import VERSIONS, _request, prepared_session
from kafka_wire.wire_helpers import encode_request, frame, request_class
from minibroker.kafka import wire
from minibroker.kafka.groups import JoinResult

GOLDEN = Path(__file__).with_name("golden.json")
UPDATE = os.environ.get("KAFKA_GOLDEN_UPDATE") == "1"


def _exchange(api_key: int, version: int, request: bytes | None) -> tuple[bytes, bytes]:
    session, member = prepared_session(api_key)
    if request is None:
        values = _request(api_key, version, member)
        request = frame(api_key, version, encode_request(api_key, version, **values), 40 + version)
    session.receive_data(request)
    return request, session.data_to_send()


def _load() -> dict[str, dict[str, str]]:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


@pytest.mark.parametrize(("api_key", "version"), VERSIONS)
def test_golden_exchange(api_key: int, version: int) -> None:
    key = f"{api_key}.{version}"
    if UPDATE:
        golden = _load()
        request, response = _exchange(api_key, version, None)
        golden[key] = {"request": request.hex(), "response": response.hex()}
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    recorded = _load().get(key)
    assert recorded is not None, f"no golden exchange for {key}: regenerate (see the docstring)"
    _, response = _exchange(api_key, version, bytes.fromhex(recorded["request"]))
    assert response.hex() == recorded["response"]


#: Static-membership exchanges: (API key, version, case). In group ``s`` the
#: static member ``app-1`` restarted (a new member id holds the instance);
#: "fenced" and "replaced" requests come from the old incarnation, with and
#: without the instance id in the request (FENCED_INSTANCE_ID, as Kafka
#: answers, against UNKNOWN_MEMBER_ID for versions without the field);
#: "leader" is a static member's join whose member list names its instance;
#: "batch" a LeaveGroup v3 naming the old incarnation with its instance
#: (FENCED_INSTANCE_ID), the instance alone (removes the new holder) and an
#: unknown one (UNKNOWN_MEMBER_ID).
STATIC = [
    (8, 6, "replaced"),
    (8, 7, "fenced"),
    (11, 4, "replaced"),
    (11, 5, "fenced"),
    (11, 5, "leader"),
    (12, 2, "replaced"),
    (13, 3, "batch"),
    (12, 3, "fenced"),
    (14, 2, "replaced"),
    (14, 3, "fenced"),
]


def _static_exchange(
    api_key: int, version: int, case: str, request: bytes | None
) -> tuple[bytes, bytes]:
    session, _ = prepared_session(api_key)
    groups = session.ns.groups
    joined: list[JoinResult] = []

    def join() -> None:
        protocols = [("range", b"m")]
        args = ("s", "", "c", 10.0, 10.0, "consumer", protocols, joined.append, 0.0)
        groups.join(*args, instance_id="app-1")

    join()
    gone = joined[0]
    groups.sync("s", 1, gone.member_id, [(gone.member_id, b"p")], lambda *_: None, 0.0)
    join()  # the restart: the first incarnation never left
    if request is None:
        values = _request(api_key, version, gone)
        if case == "batch":
            identity = request_class(13, 3, "MemberIdentity")
            leaving = [(gone.member_id, "app-1"), ("", "app-1"), ("", "app-9")]
            values.update(
                group_id="s",
                members=tuple(
                    wire.build(identity, member_id=member, group_instance_id=instance)
                    for member, instance in leaving
                ),
            )
        elif case == "leader":
            values.update(group_id="s2", group_instance_id="app-2")
        else:
            values.update(group_id="s", member_id=gone.member_id)
            values["group_instance_id"] = "app-1" if case == "fenced" else None
        request = frame(api_key, version, encode_request(api_key, version, **values), 60 + version)
    session.receive_data(request)
    return request, session.data_to_send()


@pytest.mark.parametrize(("api_key", "version", "case"), STATIC)
def test_golden_static_membership_exchange(api_key: int, version: int, case: str) -> None:
    key = f"{api_key}.{version}.{case}"
    if UPDATE:
        golden = _load()
        request, response = _static_exchange(api_key, version, case, None)
        golden[key] = {"request": request.hex(), "response": response.hex()}
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    recorded = _load().get(key)
    assert recorded is not None, f"no golden exchange for {key}: regenerate (see the docstring)"
    _, response = _static_exchange(api_key, version, case, bytes.fromhex(recorded["request"]))
    assert response.hex() == recorded["response"]
