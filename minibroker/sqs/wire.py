"""SQS's two wire protocols, request in and answer out; no I/O.

* **AWS JSON 1.0** (current botocore, aiobotocore, the other SDKs): a POST
  whose ``X-Amz-Target`` header names the action (``AmazonSQS.SendMessage``)
  and whose body is a JSON object; answers are JSON, errors carry ``__type``
  and the query-compatible ``x-amzn-query-error`` header.
* **Query** (older botocore, kombu's own async client): form parameters
  (``Action=SendMessage&QueueUrl=...``) in a POST body or the query string,
  lists and maps flattened into numbered names (``AttributeName.1``,
  ``MessageAttribute.1.Value.StringValue``); answers are XML.

Both are turned into one form, the JSON protocol's parameter shapes, so the
handler sees one request whatever the protocol; answers are built in that
shape too and rendered per protocol. Parsing is strict about shape and
bounded by the body size the HTTP layer already enforced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from minibroker.sqs.errors import SqsError, invalid_parameter, unknown_action
from minibroker.sqs.ids import new_id
from minibroker.sqs.numbers import reject_constant

Protocol = Literal["json", "query"]

JSON_CONTENT_TYPE: Final = "application/x-amz-json-1.0"
XML_NAMESPACE: Final = "http://queue.amazonaws.com/doc/2012-11-05/"
_TARGET_PREFIX: Final = "AmazonSQS."
_CREDENTIAL = re.compile(r"Credential=([^/,\s]*)/[^/,\s]*/([^/,\s]*)/")
#: Deepest nesting a flattened query name may have (``A.1.B.2.C`` is 5 parts).
_MAX_QUERY_DEPTH: Final = 6

#: Query protocol names of flattened lists -> the JSON protocol's member name.
_QUERY_LISTS: Final = {
    "AttributeName": "AttributeNames",
    "MessageAttributeName": "MessageAttributeNames",
    "MessageSystemAttributeName": "MessageSystemAttributeNames",
    "TagKey": "TagKeys",
    "SendMessageBatchRequestEntry": "Entries",
    "DeleteMessageBatchRequestEntry": "Entries",
    "ChangeMessageVisibilityBatchRequestEntry": "Entries",
}
#: Query protocol names of flattened maps -> (JSON member, key field, value field).
_QUERY_MAPS: Final = {
    "Attribute": ("Attributes", "Name", "Value"),
    "MessageAttribute": ("MessageAttributes", "Name", "Value"),
    "MessageSystemAttribute": ("MessageSystemAttributes", "Name", "Value"),
    "Tag": ("Tags", "Key", "Value"),
}
#: JSON answer members that the XML answer flattens into repeated elements.
_XML_LISTS: Final = {
    "QueueUrls": "QueueUrl",
    "queueUrls": "QueueUrl",
    "Messages": "Message",
    "Failed": "BatchResultErrorEntry",
}
_XML_MAPS: Final = {
    "Attributes": ("Attribute", "Name", "Value"),
    "MessageAttributes": ("MessageAttribute", "Name", "Value"),
    "MessageSystemAttributes": ("MessageSystemAttribute", "Name", "Value"),
    "Tags": ("Tag", "Key", "Value"),
}


@dataclass(frozen=True, slots=True)
class SqsRequest:
    action: str
    #: Parameters in the JSON protocol's shapes, whatever the protocol was.
    params: dict[str, Any]
    protocol: Protocol
    #: The path the request was sent to ("/" or "/<account>" or "/<account>/<queue>").
    path: str
    #: ``scheme://host[:port]`` as the client addressed the endpoint: queue URLs start so.
    base_url: str
    #: The region and access key named in the Signature V4 credential, if any.
    region: str | None
    access_key: str | None


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def protocol_of(headers: Mapping[str, str]) -> Protocol:
    return "json" if "x-amz-target" in headers else "query"


def parse_request(
    method: str,
    base_url: str,
    path: str,
    query_string: bytes,
    headers: Mapping[str, str],
    body: bytes,
) -> SqsRequest:
    """Read an SQS request; ``headers`` have lower-case names. Raises SqsError."""
    region, access_key = _credential(headers.get("authorization", ""))
    if protocol_of(headers) == "json":
        target = headers["x-amz-target"]
        if method != "POST" or not target.startswith(_TARGET_PREFIX):
            raise unknown_action(target)
        try:
            params = json.loads(body, parse_constant=reject_constant) if body.strip() else {}
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the stack
            raise SqsError(
                "SerializationException", "The request body is not valid JSON."
            ) from None
        if not isinstance(params, dict):
            raise SqsError("SerializationException", "The request body must be a JSON object.")
        action = target[len(_TARGET_PREFIX) :]
        return SqsRequest(action, params, "json", path, base_url, region, access_key)
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    if method == "POST" and body:
        try:
            pairs += parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise invalid_parameter("The request body is not UTF-8 form data.") from None
    flat = dict(pairs)
    action = flat.pop("Action", "")
    if not action:
        raise SqsError(
            "MissingAction", "The request must name an Action (or use AWS JSON 1.0's X-Amz-Target)."
        )
    for key in ("Version", "AWSAccessKeyId", "SignatureMethod", "SignatureVersion", "Timestamp"):
        flat.pop(key, "")
    return SqsRequest(action, unflatten(flat), "query", path, base_url, region, access_key)


def _credential(authorization: str) -> tuple[str | None, str | None]:
    found = _CREDENTIAL.search(authorization)
    return (found.group(2), found.group(1)) if found else (None, None)


def unflatten(flat: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``AttributeName.1=All&Attribute.1.Name=X&Attribute.1.Value=1`` into
    ``{"AttributeNames": ["All"], "Attributes": {"X": "1"}}``."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        if len(parts) > _MAX_QUERY_DEPTH:
            raise invalid_parameter(f"Parameter name {key[:100]!r} is nested too deeply.")
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise invalid_parameter(f"Parameter {key[:100]!r} conflicts with another.")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise invalid_parameter(f"Parameter {key[:100]!r} conflicts with another.")
        node[parts[-1]] = value
    return _convert(tree)


def _convert(tree: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in tree.items():
        if name in _QUERY_LISTS and isinstance(value, dict):
            out[_QUERY_LISTS[name]] = [
                _convert(item) if isinstance(item, dict) else item for item in _numbered(value)
            ]
        elif name in _QUERY_MAPS and isinstance(value, dict):
            member, key_field, value_field = _QUERY_MAPS[name]
            mapping: dict[str, Any] = {}
            for item in _numbered(value):
                if not isinstance(item, dict) or not isinstance(item.get(key_field), str):
                    raise invalid_parameter(f"Each {name} needs a {key_field}.")
                raw = item.get(value_field)
                mapping[item[key_field]] = _convert(raw) if isinstance(raw, dict) else raw
            out[member] = mapping
        else:
            out[name] = _convert(value) if isinstance(value, dict) else value
    return out


def _numbered(members: dict[str, Any]) -> list[Any]:
    """The members of a flattened list in index order (``.1``, ``.2``...)."""
    try:
        indexed = sorted((int(index), item) for index, item in members.items())
    except (ValueError, TypeError):
        raise invalid_parameter("A list parameter has a member that is not numbered.") from None
    return [item for _, item in indexed]


# ------------------------------------------------------------------ answers


def render_result(protocol: Protocol, action: str, result: dict[str, Any]) -> HttpAnswer:
    request_id = new_id()
    if protocol == "json":
        return HttpAnswer(
            200,
            [
                (b"content-type", JSON_CONTENT_TYPE.encode()),
                (b"x-amzn-requestid", request_id.encode()),
            ],
            json.dumps(result, separators=(",", ":")).encode(),
        )
    inner = "".join(_xml_member(action, name, value) for name, value in result.items())
    body = (
        f'<?xml version="1.0"?><{action}Response xmlns="{XML_NAMESPACE}">'
        f"<{action}Result>{inner}</{action}Result>"
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )
    return HttpAnswer(200, [(b"content-type", b"text/xml")], body.encode())


def render_error(protocol: Protocol, error: SqsError) -> HttpAnswer:
    request_id = new_id()
    fault = "Sender" if error.sender_fault else "Receiver"
    if protocol == "json":
        return HttpAnswer(
            error.status,
            [
                (b"content-type", JSON_CONTENT_TYPE.encode()),
                (b"x-amzn-requestid", request_id.encode()),
                (b"x-amzn-query-error", f"{error.query_code};{fault}".encode()),
            ],
            json.dumps(
                {"__type": f"com.amazonaws.sqs#{error.code}", "message": error.message}
            ).encode(),
        )
    body = (
        f'<?xml version="1.0"?><ErrorResponse xmlns="{XML_NAMESPACE}"><Error>'
        f"<Type>{fault}</Type><Code>{escape(error.query_code)}</Code>"
        f"<Message>{escape(error.message)}</Message><Detail/></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return HttpAnswer(error.status, [(b"content-type", b"text/xml")], body.encode())


def _xml_member(action: str, name: str, value: Any) -> str:
    if isinstance(value, list):
        element = _XML_LISTS.get(name) or (f"{action}ResultEntry" if name == "Successful" else name)
        return "".join(_xml_element(element, item, action) for item in value)
    if isinstance(value, dict) and name in _XML_MAPS:
        element, key_field, value_field = _XML_MAPS[name]
        return "".join(
            f"<{element}><{key_field}>{escape(key)}</{key_field}>"
            f"{_xml_element(value_field, item, action)}</{element}>"
            for key, item in value.items()
        )
    return _xml_element(name, value, action)


def _xml_element(name: str, value: Any, action: str) -> str:
    if isinstance(value, dict):
        inner = "".join(_xml_member(action, key, item) for key, item in value.items())
    elif isinstance(value, bool):
        inner = "true" if value else "false"
    else:
        inner = escape(str(value), {'"': "&quot;", "\r": "&#xD;"})
    return f"<{name}>{inner}</{name}>"
