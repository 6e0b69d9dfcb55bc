"""The Kafka front end: confluent-kafka, aiokafka and kafka-python on minibroker's logs.

Like the msgpack front end beside it (``minibroker/protocol/``), it is
sans-I/O and has three parts: a codec (``wire.py``, Kafka's own message
schemas through kio, plus ``records.py`` for record batches), a connection
state machine (``session.py``, one function per API in ``handlers/``) and the
state all connections share (``service.py``: topics as logs in ``topics.py``,
consumer groups in ``groups.py``, idempotent producers in ``producers.py``).
SASL logins (``sasl.py``) and permission checks (``authorize.py``) use the
server's tokens and permissions (``minibroker/access/``), as every port does.
The Trio shell serves it on a port of its own (``server/kafka_door.py``).
A topic partition is a minibroker log: see docs/kafka.md.
"""
