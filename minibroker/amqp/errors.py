"""AMQP reply codes and the two kinds of failure they come in.

A *channel* error (403, 404, 405, 406) closes one channel: the server sends
Channel.Close naming the failing method, and the connection goes on. A
*connection* error (501, 502, 503, 504, 505, 530, 540, 541) closes the whole
connection with Connection.Close. Raising one of these anywhere below the
dispatcher is how a method refuses.
"""

from __future__ import annotations

from typing import Final

REPLY_SUCCESS: Final = 200
NO_ROUTE: Final = 312
ACCESS_REFUSED: Final = 403
NOT_FOUND: Final = 404
RESOURCE_LOCKED: Final = 405
PRECONDITION_FAILED: Final = 406
CONNECTION_FORCED: Final = 320
FRAME_ERROR: Final = 501
SYNTAX_ERROR: Final = 502
COMMAND_INVALID: Final = 503
CHANNEL_ERROR: Final = 504
UNEXPECTED_FRAME: Final = 505
NOT_ALLOWED: Final = 530
NOT_IMPLEMENTED: Final = 540
INTERNAL_ERROR: Final = 541

_NAMES: Final = {
    REPLY_SUCCESS: "OK",
    NO_ROUTE: "NO_ROUTE",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}


def reply_text(code: int, detail: str) -> str:
    """RabbitMQ's style: ``NOT_FOUND - no queue 'jobs' in vhost 'test-1'``, cut to a shortstr."""
    text = f"{_NAMES.get(code, str(code))} - {detail}"
    return (
        text if len(text.encode()) <= 255 else text.encode()[:252].decode(errors="ignore") + "..."
    )


class AmqpError(Exception):
    """A method failed with an AMQP reply code; ``method_index`` names the failing method."""

    def __init__(self, code: int, detail: str, method_index: int = 0) -> None:
        super().__init__(detail)
        self.code = code
        self.text = reply_text(code, detail)
        self.method_index = method_index

    @property
    def class_id(self) -> int:
        return self.method_index >> 16

    @property
    def method_id(self) -> int:
        return self.method_index & 0xFFFF


class SoftError(AmqpError):
    """A channel error: closes that channel only."""


class HardError(AmqpError):
    """A connection error: closes the whole connection."""
