"""Where a broker listens unless told otherwise.

A leaf, shared by the server's settings (minibroker/config.py) and the
clients' URLs (minibroker/client/url.py), so that a client never loads the
server's configuration (and, through it, the permission parser) to learn a
port number. docs/protocol.md states the default port.
"""

from __future__ import annotations

from typing import Final

#: No common broker uses it (AMQP 5672, Kafka 9092, NATS 4222, MQTT 1883, Redis 6379).
DEFAULT_PORT: Final = 7878
DEFAULT_HOST: Final = "127.0.0.1"
