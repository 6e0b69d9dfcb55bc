"""SASL and permissions in the Kafka session, without a socket (test_sasl.py has the clients)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode

from kafka_wire.test_records import kio_batch
from kafka_wire.test_session import _request
from kafka_wire.wire_helpers import PORT, call, frame, request_class, responses
from minibroker.access.auth import Authenticator
from minibroker.access.permissions import Permissions
from minibroker.core.broker import Broker
from minibroker.core.log_options import LogOptions
from minibroker.kafka import sasl, wire
from minibroker.kafka.groups import JoinResult
from minibroker.kafka.service import KafkaService, KafkaSettings
from minibroker.kafka.session import FAILED_LOGIN_CLOSE_DELAY, KafkaSession
from minibroker.storage.memory import MemoryLog

TOPIC_AUTHORIZATION_FAILED = ErrorCode(29)

PERMISSIONS = """
allow app write,read,admin log:mine-0
allow app read group:g
"""


def secured(broker: Broker | None = None) -> KafkaSession:
    broker = broker or Broker(memory_log=MemoryLog)
    authenticator = Authenticator({"app-token": "app"}, permissions=Permissions.parse(PERMISSIONS))
    service = KafkaService(broker, KafkaSettings(), lambda: PORT, authenticator)
    return service.make_session(broker, 1, "127.0.0.1:5000")


def logged_in() -> KafkaSession:
    session = secured()
    assert call(session, 17, 1, mechanism="PLAIN").error_code == ErrorCode.none
    answer = call(session, 36, 1, auth_bytes=b"\x00app\x00app-token")
    assert answer.error_code == ErrorCode.none
    return session


def test_before_a_login_only_the_handshake_apis_are_served() -> None:
    session = secured()
    versions = call(session, 18, 0)
    assert {entry.api_key for entry in versions.api_keys} >= {17, 36}
    session.receive_data(frame(3, 0, b"\x00\x00\x00\x00", correlation_id=2))
    assert session.closing is not None and "before a SASL login" in session.closing.message
    assert responses(session) == []
    assert "t" not in session.broker.namespaces  # nothing was joined or created


def test_a_wrong_password_is_answered_then_the_connection_closes_a_moment_later() -> None:
    session = secured()
    call(session, 17, 1, mechanism="PLAIN")
    answer = call(session, 36, 1, auth_bytes=b"\x00app\x00guess")
    assert answer.error_code == ErrorCode.sasl_authentication_failed
    assert answer.error_message == "authentication failed: invalid user name or password"
    session.receive_data(frame(18, 0, b"", correlation_id=3))
    assert responses(session) == [] and session.closing is None  # nothing more is read
    session.broker.on_time(FAILED_LOGIN_CLOSE_DELAY)
    assert session.closing is not None and "SASL login failed" in session.closing.message


def test_an_unknown_mechanism_is_refused_with_the_ones_offered() -> None:
    answer = call(secured(), 17, 1, mechanism="GSSAPI")
    assert answer.error_code == ErrorCode.unsupported_sasl_mechanism
    assert answer.mechanisms == ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def test_a_second_login_on_one_connection_is_illegal() -> None:
    answer = call(logged_in(), 17, 1, mechanism="PLAIN", correlation_id=9)
    assert answer.error_code == ErrorCode.illegal_sasl_state


def _produce_two_topics(session: KafkaSession) -> Any:
    values = _request(0, 7, JoinResult(0))
    data = request_class(0, 7, "PartitionProduceData")
    topic = request_class(0, 7, "TopicProduceData")
    values["topic_data"] = tuple(
        topic(name=name, partition_data=(data(index=0, records=kio_batch([(None, b"x", {})])),))
        for name in ("mine", "theirs")
    )
    return call(session, 0, 7, correlation_id=20, **values)


def test_a_produce_to_two_topics_stores_the_permitted_one_only() -> None:
    session = logged_in()
    answer = _produce_two_topics(session)
    errors = {t.name: t.partition_responses[0].error_code for t in answer.responses}
    assert errors == {"mine": ErrorCode.none, "theirs": TOPIC_AUTHORIZATION_FAILED}
    assert session.ns.core.logs.get("mine-0").high_watermark == 1
    assert "theirs-0" not in session.ns.core.logs  # not even auto-created


def test_a_fetch_of_two_topics_reads_the_permitted_one_only() -> None:
    session = logged_in()
    _produce_two_topics(session)
    session.ns.topics.create("theirs", 1, session.ns.core.logs.get("mine-0").options, 0.0)
    session.ns.core.logs.append("theirs-0", [b"secret"], 0.0)
    values = _request(1, 11, JoinResult(0))
    fetch_topic = request_class(1, 11, "FetchTopic")
    [partition] = values["topics"][0].partitions
    values["topics"] = tuple(
        fetch_topic(topic=name, partitions=(partition,)) for name in ("mine", "theirs")
    )
    answer = call(session, 1, 11, correlation_id=21, **values)
    by_topic = {t.topic: t.partitions[0] for t in answer.responses}
    assert by_topic["mine"].error_code == ErrorCode.none and by_topic["mine"].records
    assert by_topic["theirs"].error_code == TOPIC_AUTHORIZATION_FAILED
    assert not by_topic["theirs"].records


def test_metadata_lists_only_the_topics_a_principal_has_a_grant_on() -> None:
    session = logged_in()
    _produce_two_topics(session)
    session.ns.topics.create("theirs", 1, session.ns.core.logs.get("mine-0").options, 0.0)
    listed = call(session, 3, 1, correlation_id=22, topics=None)
    assert [topic.name for topic in listed.topics] == ["mine"]
    named = call(
        session,
        3,
        1,
        correlation_id=23,
        topics=(wire.build(request_class(3, 1, "MetadataRequestTopic"), name="theirs"),),
    )
    assert named.topics[0].error_code == TOPIC_AUTHORIZATION_FAILED


def test_a_group_without_a_grant_is_refused_everywhere() -> None:
    session = logged_in()
    coordinator = call(session, 10, 2, correlation_id=24, key="other", key_type=0)
    assert coordinator.error_code == ErrorCode.group_authorization_failed
    described = call(session, 15, 2, correlation_id=25, groups=("other", "g"))
    assert [g.error_code for g in described.groups] == [
        ErrorCode.group_authorization_failed,
        ErrorCode.none,
    ]
    heartbeat = call(session, 12, 3, correlation_id=26, **_request(12, 3, JoinResult(0, 1)))
    assert heartbeat.error_code == ErrorCode.unknown_member_id  # group "g" is allowed


@given(
    st.sampled_from(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]), st.lists(st.binary(), max_size=3)
)
def test_any_sasl_message_is_a_login_or_a_refusal(mechanism: str, messages: list[bytes]) -> None:
    """Whatever a client sends, a mechanism answers or raises SaslFailed (the
    session's SASL_AUTHENTICATION_FAILED), and never lets it in by accident."""
    login = sasl.start(mechanism, Authenticator({"app-token": "app"}))
    assert login is not None
    for message in messages:
        try:
            login.step(message)
        except sasl.SaslFailed:
            break
    assert login.principal is None


def test_a_scram_login_that_proves_the_token_gets_the_principal_and_proves_the_server() -> None:
    """RFC 5802's exchange done by hand, as a client does it."""
    import base64
    import hashlib
    import hmac

    login = sasl.start("SCRAM-SHA-256", Authenticator({"app-token": "app"}))
    assert login is not None
    first = login.step(b"n,,n=app,r=abc").decode()
    fields = dict(part.split("=", 1) for part in first.split(","))
    assert fields["r"].startswith("abc") and fields["i"] == "4096"
    salted = hashlib.pbkdf2_hmac("sha256", b"app-token", base64.b64decode(fields["s"]), 4096)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"n=app,r=abc,{first},{without_proof}".encode()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    final = login.step(f"{without_proof},p={base64.b64encode(proof).decode()}".encode())
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    expected = hmac.new(server_key, auth_message, "sha256").digest()
    assert final == b"v=" + base64.b64encode(expected)
    assert login.principal is not None and login.principal.name == "app"


def test_offset_fetch_of_every_topic_leaves_out_what_the_principal_may_not_read() -> None:
    session = logged_in()
    _produce_two_topics(session)
    logs = session.ns.core.logs
    session.ns.topics.create("theirs", 1, logs.get("mine-0").options, 0.0)
    logs.append("theirs-0", [b"secret"], 0.0)
    for name in ("mine-0", "theirs-0"):
        logs.commit(name, "g", 1, 0.0)
    answer = call(session, 9, 5, correlation_id=27, group_id="g", topics=None)
    assert [(t.name, [p.committed_offset for p in t.partitions]) for t in answer.topics] == [
        ("mine", [1])
    ]


def test_deleting_a_group_or_altering_configs_needs_admin() -> None:
    """``read`` on a group lets a client use it, ``admin`` delete it (DeleteGroups,
    OffsetDelete); altering a topic's configs needs ``admin`` on its logs."""
    session = logged_in()
    session.ns.core.logs.create("mine-0", LogOptions(), 0.0)
    session.ns.core.logs.create("other-0", LogOptions(), 0.0)
    deleted = call(session, 42, 1, groups_names=("g",))
    assert deleted.results[0].error_code == ErrorCode.group_authorization_failed
    offsets = call(session, 47, 0, group_id="g", topics=())
    assert offsets.error_code == ErrorCode.group_authorization_failed

    def alter(topic: str) -> ErrorCode:
        cls = wire.nested(load_request_schema(33, 1), "AlterConfigsResource")
        config = wire.nested(load_request_schema(33, 1), "AlterableConfig")
        resource = cls(
            resource_type=2,
            resource_name=topic,
            configs=(config(name="retention.ms", value="60000"),),
        )
        answer = call(session, 33, 1, resources=(resource,), validate_only=False)
        return answer.responses[0].error_code  # type: ignore[no-any-return]

    assert alter("mine") == ErrorCode.none
    assert alter("other") == TOPIC_AUTHORIZATION_FAILED
    assert session.ns.core.logs.get("mine-0").options.retention_ms == 60000
