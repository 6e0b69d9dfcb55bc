"""``GET /health``: whether every store can still make writes durable.

A store whose fsync failed is fail-stop until the broker restarts
(docs/storage.md, "A failed fsync"): the broker keeps serving everything
else, so a process that is up is not the whole answer. This reports the
failed stores, for a load balancer or an orchestrator: 200 while there are
none, 503 (with each store's path and error) once there is one, which a
restart clears. Served by the metrics port and the HTTP face.
"""

from __future__ import annotations

from minibroker.core.broker import Broker
from minibroker.errors import StorageFailed


def failed_stores(broker: Broker) -> dict[str, StorageFailed]:
    """Path -> failure of every store of this broker whose fsync failed."""
    failed: dict[str, StorageFailed] | None = getattr(broker.storage, "failed", None)
    return dict(failed) if failed else {}


def health(broker: Broker) -> tuple[int, bytes]:
    """The status and JSON body of ``GET /health``."""
    import json  # here: ``minibroker serve`` loads no JSON module at start

    failed = failed_stores(broker)
    body = {
        "status": "storage_failed" if failed else "ok",
        "failed_stores": [
            {"path": path, "code": error.code, "message": error.message}
            for path, error in sorted(failed.items())
        ],
    }
    return (503 if failed else 200), json.dumps(body).encode() + b"\n"
