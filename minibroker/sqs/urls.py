"""Queue URLs, ARNs and receipt handles: how SQS names things, on minibroker's names.

A queue URL is ``<endpoint>/<account>/<queue>``. The *account* is the
minibroker namespace the queue lives in (``000000000000`` stands for the
default namespace ""), so per-test isolation shows in every URL and ARN,
and a queue URL alone says where its queue is. Requests that name no queue
(CreateQueue, ListQueues) use the namespace of the path they are posted to:
an endpoint URL ``http://127.0.0.1:PORT/test-7`` works in namespace
``test-7``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final
from urllib.parse import quote, unquote, urlsplit

from minibroker.sqs.errors import SqsError, invalid_parameter, receipt_handle_invalid

#: The account shown for the default namespace (moto and LocalStack use a fixed one too).
DEFAULT_ACCOUNT: Final = "000000000000"
_RECEIPT_PREFIX: Final = "mb2:"
#: Handles without an incarnation, given out before it was added: always stale now.
_OLD_RECEIPT_PREFIX: Final = "mb1:"


def account_of(namespace: str) -> str:
    return namespace or DEFAULT_ACCOUNT


def namespace_of(account: str) -> str:
    return "" if account == DEFAULT_ACCOUNT else account


def namespace_of_path(path: str) -> str:
    first = path.strip("/").split("/", 1)[0]
    return namespace_of(_unquote(first, path)) if first else ""


def _unquote(part: str, whole: str) -> str:
    """A percent-decoded path segment; InvalidAddress if the escapes are not UTF-8
    (``%ff``): replacing them with U+FFFD would name another queue."""
    try:
        return unquote(part, errors="strict")
    except UnicodeDecodeError:
        raise SqsError(
            "InvalidAddress",
            f"The address {whole[:200]} is not valid for this endpoint: its percent-escapes "
            "are not UTF-8.",
        ) from None


def queue_url(base: str, namespace: str, queue: str) -> str:
    return f"{base}/{quote(account_of(namespace), safe='')}/{quote(queue, safe='')}"


def parse_queue_url(url: object, default_namespace: str) -> tuple[str, str]:
    """(namespace, queue) of a queue URL; a bare queue name means ``default_namespace``."""
    if not isinstance(url, str) or not url:
        raise SqsError("MissingParameter", "The request must contain the parameter QueueUrl.")
    if "/" not in url:
        return default_namespace, url
    parts = urlsplit(url).path.strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise SqsError("InvalidAddress", f"The address {url[:200]} is not valid for this endpoint.")
    return namespace_of(_unquote(parts[0], url)), _unquote(parts[1], url)


def queue_arn(region: str, namespace: str, queue: str) -> str:
    return f"arn:aws:sqs:{region}:{account_of(namespace)}:{queue}"


def parse_arn(arn: object) -> tuple[str, str]:
    """(namespace, queue) of an SQS queue ARN."""
    parts = arn.split(":") if isinstance(arn, str) else []
    if len(parts) != 6 or parts[:3] != ["arn", "aws", "sqs"] or not parts[5]:
        raise invalid_parameter(f"Invalid value for the queue ARN: {str(arn)[:200]!r}.")
    return namespace_of(parts[4]), parts[5]


def receipt_handle(queue: str, delivery_id: int, incarnation: int) -> str:
    """An opaque handle for one delivery: the queue, the core's delivery id and
    the endpoint's ``incarnation``.

    The core numbers deliveries from 1 again at every start, so the
    incarnation (a random number drawn when the endpoint starts) is what
    keeps a handle given out before a restart from naming a delivery made
    after it."""
    raw = f"{incarnation:x}.{delivery_id}\n{queue}".encode()
    return _RECEIPT_PREFIX + base64.urlsafe_b64encode(raw).decode()


def parse_receipt_handle(handle: object, queue: str) -> tuple[int | None, int]:
    """(incarnation, delivery id) a handle names; ReceiptHandleIsInvalid if it is
    not one of this queue's handles. The incarnation is None for a handle of
    the format before incarnations (``mb1:``), which only an earlier process
    can have given out."""
    if not isinstance(handle, str):
        raise receipt_handle_invalid(str(handle))
    if handle.startswith(_RECEIPT_PREFIX):
        encoded, versioned = handle[len(_RECEIPT_PREFIX) :], True
    elif handle.startswith(_OLD_RECEIPT_PREFIX):
        encoded, versioned = handle[len(_OLD_RECEIPT_PREFIX) :], False
    else:
        raise receipt_handle_invalid(handle)
    try:
        raw = base64.urlsafe_b64decode(encoded).decode()
        delivery, named = raw.split("\n", 1)
        incarnation: int | None = None
        if versioned:
            prefix, delivery = delivery.split(".", 1)
            incarnation = int(prefix, 16)
        delivery_id = int(delivery)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise receipt_handle_invalid(handle) from None
    if named != queue or delivery_id <= 0:
        raise receipt_handle_invalid(handle)
    return incarnation, delivery_id
