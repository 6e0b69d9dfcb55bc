"""SQS errors as SQS sends them: a code per protocol and an HTTP status.

The AWS JSON protocol names an error by its shape (``QueueDoesNotExist``)
in ``__type`` and, because SQS is "query compatible", also sends the code
the older query protocol used (``AWS.SimpleQueueService.NonExistentQueue``)
in the ``x-amzn-query-error`` header; botocore reports that one as the
error code, so applications written against either protocol see the codes
they always saw.
"""

from __future__ import annotations

from typing import Final

from minibroker.errors import BrokerError, StorageFull


class SqsError(Exception):
    """An error answer: ``code`` (JSON shape name), ``query_code``, HTTP ``status``."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        query_code: str | None = None,
        status: int = 400,
        sender_fault: bool = True,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.query_code = query_code or code
        self.status = status
        self.sender_fault = sender_fault


_PREFIX: Final = "AWS.SimpleQueueService."


def queue_does_not_exist(detail: str = "") -> SqsError:
    text = "The specified queue does not exist." + (f" ({detail})" if detail else "")
    return SqsError("QueueDoesNotExist", text, query_code=_PREFIX + "NonExistentQueue")


def queue_name_exists(name: str, detail: str) -> SqsError:
    return SqsError(
        "QueueNameExists",
        f"A queue already exists with the same name and a different value for {detail}",
        query_code="QueueAlreadyExists",
    )


def invalid_parameter(message: str) -> SqsError:
    return SqsError("InvalidParameterValue", message)


def missing_parameter(name: str) -> SqsError:
    return SqsError("MissingParameter", f"The request must contain the parameter {name}.")


def invalid_attribute_name(name: str) -> SqsError:
    return SqsError("InvalidAttributeName", f"Unknown Attribute {name}.")


def invalid_attribute_value(name: str, reason: str) -> SqsError:
    return SqsError(
        "InvalidAttributeValue", f"Invalid value for the parameter {name}. Reason: {reason}"
    )


def receipt_handle_invalid(handle: str) -> SqsError:
    return SqsError(
        "ReceiptHandleIsInvalid", f'The input receipt handle "{handle[:80]}" is not a valid one.'
    )


def message_not_inflight() -> SqsError:
    return SqsError(
        "MessageNotInflight",
        "The message referred to isn't in flight.",
        query_code=_PREFIX + "MessageNotInflight",
    )


def invalid_message_contents(reason: str) -> SqsError:
    return SqsError("InvalidMessageContents", reason)


def batch_error(code: str, message: str) -> SqsError:
    """EmptyBatchRequest, TooManyEntriesInBatchRequest, BatchEntryIdsNotDistinct,
    InvalidBatchEntryId, BatchRequestTooLong."""
    return SqsError(code, message, query_code=_PREFIX + code)


def unknown_action(action: str) -> SqsError:
    return SqsError(
        "UnknownOperationException",
        f"The action {action[:100]} is not valid for this endpoint.",
        query_code="InvalidAction",
    )


def internal_error(message: str) -> SqsError:
    return SqsError("InternalError", message, status=500, sender_fault=False)


def service_unavailable(message: str) -> SqsError:
    """503 ServiceUnavailable: what SQS answers for a temporary failure on its
    side; SDKs retry it (botocore's ``service_unavailable`` rule), as they
    should a full disk, which frees up without the client changing anything."""
    return SqsError("ServiceUnavailable", message, status=503, sender_fault=False)


def broker_failure(error: BrokerError) -> SqsError:
    """The answer to a core error that is the broker's, not the request's:
    a full data directory is 503 ServiceUnavailable, anything else 500."""
    if isinstance(error, StorageFull):
        return service_unavailable(
            "The broker's data directory is full; retry once space is freed. "
            f"({error.code}: {error.message})"
        )
    return internal_error(f"{error.code}: {error.message}")
