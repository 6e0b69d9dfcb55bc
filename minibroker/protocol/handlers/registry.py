"""Where handlers and push encoders register, one module per messaging model.

A handler turns one request dataclass into a call on the core and returns
the response's ``result`` value (plain msgpack-ready data), or ``PARKED``
when the core will finish the request later through the session's
``resolve``/``reject``. A push encoder drains one kind of push source into
frame bytes within a byte budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from minibroker.protocol.session import Session

F = TypeVar("F")
S = TypeVar("S")

Handler = Callable[["Session", Any], Any]
#: (source, byte budget) -> (frame bytes, source still has more to send)
PushEncoder = Callable[[Any, int], tuple[bytes, bool]]


class _Parked:
    def __repr__(self) -> str:
        return "PARKED"


#: Returned by a handler whose request the core has parked (long poll, request/reply).
PARKED: Any = _Parked()

HANDLERS: dict[str, Handler] = {}
PUSH_ENCODERS: dict[type, PushEncoder] = {}


def handles(
    frame_type: type[F],
) -> Callable[[Callable[[Session, F], Any]], Callable[[Session, F], Any]]:
    """Register the decorated function as the handler of ``frame_type``."""

    def register(fn: Callable[[Session, F], Any]) -> Callable[[Session, F], Any]:
        op: str = frame_type.op  # type: ignore[attr-defined]
        if op in HANDLERS:
            raise RuntimeError(f"two handlers for op {op!r}")
        HANDLERS[op] = fn
        return fn

    return register


def encodes_pushes(
    source_type: type[S],
) -> Callable[[Callable[[S, int], tuple[bytes, bool]]], Callable[[S, int], tuple[bytes, bool]]]:
    """Register the decorated function as the push encoder for ``source_type``."""

    def register(
        fn: Callable[[S, int], tuple[bytes, bool]],
    ) -> Callable[[S, int], tuple[bytes, bool]]:
        PUSH_ENCODERS[source_type] = fn
        return fn

    return register
