"""Turning push frames into the items a subscription yields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from minibroker.core.errors import BrokerError, error_from_code

T = TypeVar("T")

#: (push frame map, client) -> items for the subscription's buffer.
PushParser = Callable[[dict[str, Any], Any], list[T]]


class SubscriptionEnded(BrokerError):
    """The broker ended a subscription (e.g. its log was deleted); ``cause`` says why."""

    code = "subscription_ended"

    def __init__(self, message: str, cause: BrokerError | None = None) -> None:
        super().__init__(message)
        self.cause = cause

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> SubscriptionEnded:
        cause = error_from_code(str(frame.get("code")), str(frame.get("message")))
        return cls(f"subscription ended by the broker: {cause.message}", cause)
