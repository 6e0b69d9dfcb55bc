"""SQS messages on minibroker queues: message attributes as headers, bodies as bytes.

An SQS message keeps everything in the queue's own ``Message``: its body
(the UTF-8 bytes of the SQS body) and its headers. Message attributes become
headers a native consumer can read directly: a ``String`` attribute ``k`` is
the header ``k``; other types keep their value in the header too (Binary as
base64) and their data type in the ``x-sqs-types`` header (JSON, only when
some attribute is not a plain ``String``). Headers whose names start with
``x-sqs-`` are the front end's own bookkeeping (the message id, the trace
header) and never shown as attributes. So a message put natively with
headers arrives over SQS with ``String`` attributes, and one sent over SQS
arrives natively with readable headers.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from minibroker.sqs.errors import invalid_message_contents, invalid_parameter
from minibroker.sqs.ids import new_id
from minibroker.sqs.numbers import is_number

RESERVED_PREFIX: Final = "x-sqs-"
MESSAGE_ID_HEADER: Final = "x-sqs-message-id"
TYPES_HEADER: Final = "x-sqs-types"
TRACE_HEADER: Final = "x-sqs-trace-header"
#: Most message attributes one message may carry (SQS's limit).
MAX_ATTRIBUTES: Final = 10

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,256}$")
_DATA_TYPE = re.compile(r"^(String|Number|Binary)(\.[A-Za-z0-9_.\-]{1,250})?$")
# Characters SQS allows in a body and in string values (XML 1.0's).
_INVALID_CHARACTER = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class AttributeValue:
    """One message attribute: a data type and a string or a binary value."""

    data_type: str
    string: str | None = None
    binary: bytes | None = None

    def to_json(self) -> dict[str, str]:
        out = {"DataType": self.data_type}
        if self.binary is not None:
            out["BinaryValue"] = base64.b64encode(self.binary).decode()
        else:
            out["StringValue"] = self.string or ""
        return out

    def size(self) -> int:
        value = self.binary if self.binary is not None else (self.string or "").encode()
        return len(self.data_type) + len(value)


def check_body(body: object) -> str:
    if not isinstance(body, str) or not body:
        raise invalid_parameter("The request must contain a non-empty MessageBody.")
    check_body_characters(body, "message body")
    return body


def parse_attributes(raw: object, label: str = "MessageAttributes") -> dict[str, AttributeValue]:
    """Validate SendMessage's ``MessageAttributes`` (JSON shape) into values."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid_parameter(f"{label} must be a map of attribute names to values.")
    if len(raw) > MAX_ATTRIBUTES:
        raise invalid_parameter(
            f"Number of message attributes [{len(raw)}] exceeds the allowed maximum "
            f"[{MAX_ATTRIBUTES}]."
        )
    return {check_attribute_name(name): _parse_value(name, value) for name, value in raw.items()}


def check_attribute_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise invalid_parameter(
            f"Message attribute name {str(name)[:260]!r} is invalid: use 1 to 256 letters, "
            "digits, '_', '-' and '.'."
        )
    lowered = name.lower()
    if (
        lowered.startswith(("aws.", "amazon.", RESERVED_PREFIX))
        or ".." in name
        or name.startswith(".")
        or name.endswith(".")
    ):
        raise invalid_parameter(f"Message attribute name {name!r} is reserved or malformed.")
    return name


def _parse_value(name: str, value: object) -> AttributeValue:
    if not isinstance(value, dict):
        raise invalid_parameter(f"The message attribute {name!r} must have a value.")
    data_type = value.get("DataType")
    if not isinstance(data_type, str) or not _DATA_TYPE.match(data_type):
        raise invalid_parameter(
            f"The message attribute {name!r} has an invalid message attribute type, the set of "
            "supported type prefixes is Binary, Number, and String."
        )
    if data_type.startswith("Binary"):
        binary = value.get("BinaryValue")
        if isinstance(binary, str):
            try:
                binary = base64.b64decode(binary, validate=True)
            except binascii.Error:
                raise invalid_parameter(f"The message attribute {name!r} is not base64.") from None
        if not isinstance(binary, bytes) or not binary:
            raise invalid_parameter(
                f"The message attribute {name!r} with type 'Binary' must use field 'Binary'."
            )
        return AttributeValue(data_type, binary=binary)
    string = value.get("StringValue")
    if not isinstance(string, str) or not string:
        raise invalid_parameter(
            f"The message attribute {name!r} must contain a non-empty message attribute value."
        )
    if data_type.startswith("Number") and not is_number(string):
        raise invalid_parameter(f"Can't cast the value of message attribute {name!r} to a number.")
    check_body_characters(string, f"message attribute {name!r}")
    return AttributeValue(data_type, string=string)


def check_body_characters(text: str, what: str) -> None:
    bad = _INVALID_CHARACTER.search(text)
    if bad is not None:
        raise invalid_message_contents(
            f"Invalid characters found in the {what}: {bad.group()!r}. Only Unicode "
            "characters allowed in XML 1.0 are accepted."
        )


def to_headers(
    attributes: Mapping[str, AttributeValue], trace_header: str | None
) -> tuple[str, dict[str, str]]:
    """The message id of a new message and the headers that carry it and its attributes."""
    message_id = new_id()
    headers = {MESSAGE_ID_HEADER: message_id}
    types: dict[str, str] = {}
    for name, value in attributes.items():
        if value.binary is not None:
            headers[name] = base64.b64encode(value.binary).decode()
        else:
            headers[name] = value.string or ""
        if value.data_type != "String":
            types[name] = value.data_type
    if types:
        headers[TYPES_HEADER] = json.dumps(types, separators=(",", ":"), sort_keys=True)
    if trace_header is not None:
        headers[TRACE_HEADER] = trace_header
    return message_id, headers


def from_headers(headers: Mapping[str, str] | None) -> dict[str, AttributeValue]:
    """The message attributes a message's headers stand for (all of them)."""
    if not headers:
        return {}
    types: dict[str, Any] = {}
    raw_types = headers.get(TYPES_HEADER)
    if raw_types:
        try:
            loaded = json.loads(raw_types)
        except ValueError:
            loaded = {}
        if isinstance(loaded, dict):
            types = loaded
    out: dict[str, AttributeValue] = {}
    for name, value in headers.items():
        if name.startswith(RESERVED_PREFIX):
            continue
        data_type = types.get(name, "String")
        if not isinstance(data_type, str):
            data_type = "String"
        if data_type.startswith("Binary"):
            try:
                out[name] = AttributeValue(data_type, binary=base64.b64decode(value))
                continue
            except binascii.Error:
                data_type = "String"  # a native header that merely shares the name
        out[name] = AttributeValue(data_type, string=value)
    return out


def select_attributes(
    attributes: dict[str, AttributeValue], wanted: list[str]
) -> dict[str, AttributeValue]:
    """Filter by ReceiveMessage's ``MessageAttributeNames``: names, ``All``,
    ``.*`` or ``prefix.*``."""
    if not wanted or not attributes:
        return {}
    if "All" in wanted or ".*" in wanted:
        return attributes
    exact = {w for w in wanted if not w.endswith(".*")}
    prefixes = tuple(w[:-1] for w in wanted if w.endswith(".*"))
    return {
        name: value
        for name, value in attributes.items()
        if name in exact or (prefixes and name.startswith(prefixes))
    }


def message_id_of(headers: Mapping[str, str] | None, fallback: str) -> str:
    """The SQS message id; a message put natively has none, so one is derived from
    ``fallback`` (stable for the message: the same on every redelivery)."""
    if headers:
        found = headers.get(MESSAGE_ID_HEADER)
        if found:
            return found
    return str(uuid.uuid5(uuid.NAMESPACE_URL, fallback))


def decode_body(body: bytes) -> str:
    """SQS bodies are text: a native message that is not UTF-8 shows replacement characters."""
    return body.decode("utf-8", errors="replace")
