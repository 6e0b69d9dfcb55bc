"""With a certificate, the Kafka port speaks TLS like the msgpack port (security.protocol=SSL)."""

from __future__ import annotations

from pathlib import Path

import trustme

from minibroker.testing import run_in_thread


def test_a_kafka_client_produces_and_consumes_over_tls(tmp_path: Path) -> None:
    from confluent_kafka import Consumer, Producer

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key, ca_file = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    with chain.open("wb") as out:
        for blob in cert.cert_chain_pems:
            out.write(blob.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    with run_in_thread(kafka_port=0, tls_cert=chain, tls_key=key) as server:
        tls = {
            "bootstrap.servers": server.kafka_bootstrap,
            "security.protocol": "SSL",
            "ssl.ca.location": str(ca_file),
        }
        producer = Producer(tls)
        producer.produce("secure", b"sealed")
        assert producer.flush(20) == 0
        consumer = Consumer({**tls, "group.id": "g", "auto.offset.reset": "earliest"})
        consumer.subscribe(["secure"])
        message = consumer.poll(20)
        assert message is not None and message.error() is None
        assert message.value() == b"sealed"
        consumer.close()
