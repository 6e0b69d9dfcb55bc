"""Request handlers, one module per messaging model (see registry.py)."""

from minibroker.protocol.handlers import base, logs, namespaces, queues, rpc, topics
from minibroker.protocol.handlers.registry import (
    HANDLERS,
    PARKED,
    PUSH_ENCODERS,
    encodes_pushes,
    handles,
)

__all__ = [
    "HANDLERS",
    "PARKED",
    "PUSH_ENCODERS",
    "base",
    "encodes_pushes",
    "handles",
    "logs",
    "namespaces",
    "queues",
    "rpc",
    "topics",
]
