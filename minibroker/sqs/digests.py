"""The MD5 digests SQS returns with every sent and received message.

SDKs (the Java and .NET SDKs, older botocore, kombu's async client) verify
them, so they must be computed exactly as SQS does: the body's digest is the
MD5 of its UTF-8 bytes; the attributes' digest is the MD5 of each attribute,
sorted by name, encoded as

    length(name) name length(data type) data type transport value length(value) value

with 4-byte big-endian lengths, UTF-8 strings, and a transport byte of 1 for
String and Number values (the value's UTF-8 bytes) or 2 for Binary values
(the raw bytes). Message system attributes (AWSTraceHeader) use the same
encoding.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping

from minibroker.sqs.messages import AttributeValue

_STRING_TRANSPORT = b"\x01"
_BINARY_TRANSPORT = b"\x02"


def md5_of_body(body: str) -> str:
    return hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()


def md5_of_attributes(attributes: Mapping[str, AttributeValue]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        _add(digest, name.encode())
        _add(digest, value.data_type.encode())
        if value.binary is not None:
            digest.update(_BINARY_TRANSPORT)
            _add(digest, value.binary)
        else:
            digest.update(_STRING_TRANSPORT)
            _add(digest, (value.string or "").encode())
    return digest.hexdigest()


def _add(digest: hashlib._Hash, data: bytes) -> None:
    digest.update(struct.pack(">I", len(data)))
    digest.update(data)
