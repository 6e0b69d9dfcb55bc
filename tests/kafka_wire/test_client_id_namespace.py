"""The namespace a client id names (docs/kafka.md), and one that breaks the rules."""

from __future__ import annotations

import pytest

from .wire_helpers import frame, open_session, responses


@pytest.mark.parametrize("client_id", ["a b/app", "é/app", "%2e%2e/app", "n" * 300 + "/app"])
def test_a_client_id_naming_an_invalid_namespace_closes_the_connection(client_id: str) -> None:
    """Kafka has no error code for a client id, so the connection is closed
    unanswered, as docs/kafka.md says (the server logs invalid_name)."""
    session = open_session()
    session.receive_data(frame(18, 0, b"", client_id=client_id))
    assert session.closing is not None
    assert "namespace" in str(session.closing)
    assert session.data_to_send() == b""


@pytest.mark.parametrize("client_id", ["/app", "app", "test-7/app/more"])
def test_a_client_id_without_a_namespace_or_with_slashes_after_it_is_served(
    client_id: str,
) -> None:
    session = open_session()
    session.receive_data(frame(18, 0, b"", client_id=client_id))
    assert session.closing is None
    assert [cid for cid, _ in responses(session)] == [1]
