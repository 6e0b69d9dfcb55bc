"""SASL on the Kafka port: PLAIN and SCRAM-SHA-256/512 over minibroker's tokens.

Kafka clients log in with a user name and a password (``security.protocol``
``SASL_PLAINTEXT`` or ``SASL_SSL``). On minibroker the user name is a
principal of the tokens file (``ci`` for the line ``ci:1f0c9a3e7b``,
``token`` for ``--auth-token``) and the password is one of its tokens, so a
Kafka client is the same principal, with the same permissions, as a msgpack
client holding that token (docs/security.md).

* **PLAIN** (RFC 4616) sends the password itself: use it over TLS.
* **SCRAM-SHA-256** and **SCRAM-SHA-512** (RFC 5802, RFC 7677) prove the
  password without sending it. A SCRAM server normally stores only salted
  keys; minibroker has the tokens themselves, so it derives the keys at
  login, with a salt that is fixed per principal and mechanism for the life
  of the process (and made up the same way for unknown names, so the answer
  does not reveal which names exist) and 4096 iterations, Kafka's minimum.
  Channel binding is not offered (``n,,``), as with every Kafka client.

Each mechanism is a small sans-I/O object: the session feeds it the bytes
of each SaslAuthenticate request and sends back what it returns, until it
has a principal or raises :class:`SaslFailed`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache
from typing import Final, Protocol

from minibroker.access.auth import Authenticator, Principal
from minibroker.errors import Unauthorized

PLAIN: Final = "PLAIN"
SCRAM_SHA_256: Final = "SCRAM-SHA-256"
SCRAM_SHA_512: Final = "SCRAM-SHA-512"
#: hashlib's name of each SCRAM mechanism's hash.
_SCRAM_HASHES: Final = {SCRAM_SHA_256: "sha256", SCRAM_SHA_512: "sha512"}
SCRAM_ITERATIONS: Final = 4096
#: Longest SASL message accepted (a SCRAM message is about 200 bytes).
MAX_MESSAGE_BYTES: Final = 4096

#: Salts are derived from this, per process: fixed for a principal while the
#: server runs, never stored, and the same kind of value for unknown names.
_SALT_KEY: Final = secrets.token_bytes(32)


class SaslFailed(Exception):
    """The login failed; the message goes to the client (SASL_AUTHENTICATION_FAILED)."""


class Mechanism(Protocol):
    """One login in progress."""

    #: Who logged in, once the exchange has succeeded.
    principal: Principal | None

    def step(self, message: bytes) -> bytes:
        """Take the client's next message; the server's answer (empty when none)."""
        ...


def mechanisms(authenticator: Authenticator) -> tuple[str, ...]:
    """The mechanisms offered: SCRAM needs tokens to prove (without any, PLAIN
    lets everyone in as ``anonymous``, as the msgpack hello does)."""
    if not authenticator.enabled:
        return (PLAIN,)
    return (PLAIN, SCRAM_SHA_256, SCRAM_SHA_512)


def start(name: str, authenticator: Authenticator) -> Mechanism | None:
    """A new login with mechanism ``name``, or None if it is not offered."""
    if name not in mechanisms(authenticator):
        return None
    if name == PLAIN:
        return PlainLogin(authenticator)
    return ScramLogin(authenticator, _SCRAM_HASHES[name])


class PlainLogin:
    """RFC 4616: one message ``authzid NUL authcid NUL password``, no answer."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator
        self.principal: Principal | None = None

    def step(self, message: bytes) -> bytes:
        if self.principal is not None:
            raise SaslFailed("PLAIN takes one message")
        parts = message.split(b"\x00")
        if len(parts) != 3 or len(message) > MAX_MESSAGE_BYTES:
            raise SaslFailed("a PLAIN message is 'authzid NUL user NUL password'")
        authzid, user, password = parts
        if authzid and authzid != user:
            raise SaslFailed("acting for another user (authzid) is not supported")
        try:
            name = user.decode()
            if not self._authenticator.enabled:
                self.principal = self._authenticator.authenticate(None)
            else:
                self.principal = self._authenticator.authenticate_as(
                    name, lambda token: hmac.compare_digest(token, password)
                )
        except (UnicodeDecodeError, Unauthorized):
            raise SaslFailed("authentication failed: invalid user name or password") from None
        return b""


class ScramLogin:
    """RFC 5802 server side: client-first, server-first, client-final, server-final."""

    def __init__(self, authenticator: Authenticator, hash_name: str) -> None:
        self._authenticator = authenticator
        self._hash = hash_name
        self.principal: Principal | None = None
        self._user = ""
        self._nonce = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._done = False

    def step(self, message: bytes) -> bytes:
        if len(message) > MAX_MESSAGE_BYTES:
            raise SaslFailed("SCRAM message too long")
        try:
            text = message.decode()
        except UnicodeDecodeError:
            raise SaslFailed("a SCRAM message must be UTF-8") from None
        if self._done:
            raise SaslFailed("the SCRAM exchange is over")
        if not self._server_first:
            return self._first(text).encode()
        self._done = True
        return self._final(text).encode()

    def _first(self, text: str) -> str:
        header, sep, bare = _split_gs2(text)
        if not sep:
            raise SaslFailed("malformed SCRAM client-first message")
        if header != "n,,":
            raise SaslFailed("channel binding and authzid are not supported (send 'n,,')")
        fields = _attributes(bare)
        user, client_nonce = fields.get("n"), fields.get("r")
        if user is None or not client_nonce or "m" in fields:
            raise SaslFailed("a SCRAM client-first message needs n= and r=")
        self._user = user.replace("=2C", ",").replace("=3D", "=")
        self._nonce = client_nonce + base64.b64encode(secrets.token_bytes(18)).decode()
        self._client_first_bare = bare
        salt = base64.b64encode(self._salt()).decode()
        self._server_first = f"r={self._nonce},s={salt},i={SCRAM_ITERATIONS}"
        return self._server_first

    def _final(self, text: str) -> str:
        without_proof, sep, proof_text = text.rpartition(",p=")
        fields = _attributes(without_proof) if sep else {}
        if fields.get("c") != "biws" or fields.get("r") != self._nonce:
            raise SaslFailed("SCRAM client-final message does not match the exchange")
        try:
            proof = base64.b64decode(proof_text, validate=True)
        except ValueError:
            raise SaslFailed("SCRAM proof is not base64") from None
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        signature = b""

        def proves(token: bytes) -> bool:
            nonlocal signature
            salted = _salted_password(self._hash, token, self._salt(), SCRAM_ITERATIONS)
            client_key = _hmac(self._hash, salted, b"Client Key")
            stored_key = hashlib.new(self._hash, client_key).digest()
            expected = _hmac(self._hash, stored_key, auth_message.encode())
            given_key = bytes(a ^ b for a, b in zip(proof, expected, strict=False))
            ok = len(proof) == len(expected) and hmac.compare_digest(
                hashlib.new(self._hash, given_key).digest(), stored_key
            )
            if ok:
                server_key = _hmac(self._hash, salted, b"Server Key")
                signature = _hmac(self._hash, server_key, auth_message.encode())
            return ok

        try:
            self.principal = self._authenticator.authenticate_as(self._user, proves)
        except Unauthorized:
            raise SaslFailed("authentication failed: invalid user name or password") from None
        return "v=" + base64.b64encode(signature).decode()

    def _salt(self) -> bytes:
        return hmac.new(_SALT_KEY, f"{self._hash}\x00{self._user}".encode(), "sha256").digest()[:16]


def _split_gs2(text: str) -> tuple[str, bool, str]:
    """Split ``gs2-header`` (two comma-terminated fields) from the bare message."""
    first = text.find(",")
    second = text.find(",", first + 1) if first >= 0 else -1
    if second < 0:
        return "", False, ""
    return text[: second + 1], True, text[second + 1 :]


def _attributes(text: str) -> dict[str, str]:
    """``a=1,b=2`` -> {"a": "1", "b": "2"} (values may contain '=')."""
    found: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise SaslFailed(f"malformed SCRAM attribute {part!r}")
        found[key] = value
    return found


def _hmac(hash_name: str, key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hash_name).digest()


@lru_cache(maxsize=256)
def _salted_password(hash_name: str, token: bytes, salt: bytes, iterations: int) -> bytes:
    """SCRAM's ``Hi()``: PBKDF2. Cached, as a client opens several connections
    and each login would otherwise spend milliseconds of the event loop on it."""
    return hashlib.pbkdf2_hmac(hash_name, token, salt, iterations)
