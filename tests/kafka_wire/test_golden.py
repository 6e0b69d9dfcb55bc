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
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kafka_wire.test_session import VERSIONS, _request, prepared_session
from kafka_wire.wire_helpers import encode_request, frame

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
