"""Namespace requests: ``namespace.drop`` deletes one with everything in it.

``namespace.drop``   ``{"dropped": bool}`` (False: there was nothing to drop)

A connection cannot drop the namespace it is in: the drop closes every
connection there, so the answer could never reach it. The test fixtures
drop each test's namespace from a connection in the default namespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from minibroker.errors import Conflict
from minibroker.protocol import frames

if TYPE_CHECKING:
    from minibroker.protocol.session import Session


def drop(session: Session, frame: frames.NamespaceDrop, now: float) -> dict[str, Any]:
    if frame.namespace == session.ns.name:
        raise Conflict(
            f"this connection is in namespace {frame.namespace!r} and cannot drop it; "
            "drop it from a connection to another namespace (the default one, say)",
            namespace=frame.namespace,
        )
    return {"dropped": session.broker.drop_namespace(frame.namespace)}
