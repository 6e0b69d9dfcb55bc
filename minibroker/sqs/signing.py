"""Signature Version 4, checked against the access keys the server was given.

By default the SQS endpoint accepts any signature, as test doubles do. With
keys (``serve --sqs-keys FILE``, ``ServerConfig.sqs_keys``) every request must
carry a valid ``Authorization: AWS4-HMAC-SHA256 ...`` header made with one of
them: the endpoint rebuilds the canonical request from what it received and
compares signatures (in constant time). What is not checked: the request's
age (``X-Amz-Date`` against the clock: the broker's clock may be a test
clock) and presigned query-string signatures, which SQS clients do not use.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, unquote

from minibroker.sqs.errors import SqsError

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})$"
)


def load_keys_file(path: str) -> dict[str, str]:
    """Read ``ACCESS_KEY_ID:SECRET_ACCESS_KEY`` lines ('#' comments) into a map."""
    keys: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, 1):
            entry = raw.split("#", 1)[0].strip()
            if entry:
                key_id, sep, secret = (part.strip() for part in entry.partition(":"))
                if not (sep and key_id and secret):
                    raise ValueError(f"{path}:{number}: expected ACCESS_KEY_ID:SECRET_ACCESS_KEY")
                keys[key_id] = secret
    return keys


def check_signature(
    keys: Mapping[str, str],
    method: str,
    raw_path: bytes,
    query_string: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> str:
    """The access key id that signed the request, or SqsError (HTTP 403)."""
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    authorization = ",".join(by_name.get("authorization", []))
    if not authorization:
        raise _denied(
            "MissingAuthenticationToken",
            "Request must contain a signature that conforms to AWS standards.",
        )
    found = _AUTHORIZATION.match(authorization.strip())
    if found is None:
        raise _denied("IncompleteSignature", "The Authorization header is not AWS4-HMAC-SHA256.")
    key_id, day, region, service, signed, signature = found.groups()
    secret = keys.get(key_id)
    if secret is None:
        raise _denied(
            "InvalidClientTokenId", "The security token included in the request is invalid."
        )
    signed_names = signed.split(";")
    canonical_headers = "".join(
        f"{name}:{','.join(' '.join(v.split()) for v in by_name.get(name, []))}\n"
        for name in signed_names
    )
    payload = by_name.get("x-amz-content-sha256", [hashlib.sha256(body).hexdigest()])[0]
    canonical_request = "\n".join(
        [
            method,
            quote(unquote(raw_path.decode("latin-1")), safe="/~") or "/",
            _canonical_query(query_string),
            canonical_headers,
            signed,
            payload,
        ]
    )
    amz_date = (by_name.get("x-amz-date") or by_name.get("date") or [""])[0]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise _denied(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    return key_id


def _canonical_query(query_string: bytes) -> str:
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(pairs))


def _denied(code: str, message: str) -> SqsError:
    return SqsError(code, message, status=403)
