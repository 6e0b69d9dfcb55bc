"""Which HTTP status answers each of the wire protocol's error codes.

The JSON error body carries the wire code itself (``{"error": {"code":
"not_found", ...}}``), so a client can branch on the same codes over HTTP
as over the msgpack port; the status is for HTTP tooling (curl ``-f``,
proxies, retries) and follows what each code means for the request.
"""

from __future__ import annotations

from typing import Final

from minibroker.errors import BrokerError

STATUS_BY_CODE: Final[dict[str, int]] = {
    "bad_frame": 400,
    "bad_request": 400,
    "invalid_name": 400,
    "unsupported_version": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "unknown_op": 404,
    "unknown_delivery": 404,
    # Nobody serves the subject: like a queue that does not exist, what the
    # path names is not there (a 5xx would say the broker failed, and HTTP
    # tooling such as schemathesis's not_a_server_error counts it as a bug).
    "no_responders": 404,
    "conflict": 409,
    "duplicate_id": 409,
    "slow_consumer": 409,
    "too_large": 413,
    # An offset past the log's end conflicts with the log as it is now (it
    # becomes valid as records arrive): 409, not 416, which is about Range
    # headers, and which schema-driven tools count as a refused valid request.
    "offset_out_of_range": 409,
    # The queue refused the message (reject-new overflow) or a limit is
    # reached: the client may retry later, as with a rate limit.
    "overflow": 429,
    "limit_exceeded": 429,
    "storage_error": 500,
    "storage_failed": 500,
    "internal": 500,
    "responder_gone": 502,
    "responder_error": 502,
    "shutting_down": 503,
    "timeout": 504,
    "storage_full": 507,
}


def status_of(code: str) -> int:
    """The HTTP status for a wire error code (500 for a code this table lacks)."""
    return STATUS_BY_CODE.get(code, 500)


def error_body(error: BrokerError) -> dict[str, object]:
    """The JSON body of an error answer: the wire code, the message and any details."""
    out: dict[str, object] = {"code": error.code, "message": error.message}
    details = {k: v for k, v in error.details.items() if _is_json(v)}
    if details:
        out["details"] = details
    return {"error": out}


def _is_json(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
