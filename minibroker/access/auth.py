"""Token authentication for the hello handshake.

With no tokens configured every client is let in. With tokens (``--auth-token``
or a tokens file), hello must carry one of them; the comparison is constant
time (``hmac.compare_digest``) so response timing does not leak how much of a
guess was right.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from minibroker.access.permissions import Grants, Permissions
from minibroker.errors import Unauthorized
from minibroker.value_class import Value, field


class Principal(Value, frozen=True):
    """Who a connection authenticated as (``name`` is "anonymous" without auth).

    ``grants`` is what it may do when a permissions file is in force (see
    access/permissions.py); None means everything.
    """

    name: str
    grants: Grants | None = field(default=None, compare=False)


ANONYMOUS = Principal("anonymous")


class Authenticator:
    def __init__(
        self, tokens: dict[str, str] | None = None, *, permissions: Permissions | None = None
    ) -> None:
        """``tokens`` maps token -> principal name; empty or None disables auth.

        ``permissions``, when given, limits each principal to its grants
        (without tokens, everyone is the principal "anonymous").
        """
        self._tokens = [(t.encode(), name) for t, name in (tokens or {}).items()]
        self._permissions = permissions

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    @property
    def permissions(self) -> Permissions | None:
        """The permissions file in force (None: every principal may do everything)."""
        return self._permissions

    def authenticate(self, token: str | None) -> Principal:
        """The principal ``token`` belongs to; Unauthorized if it belongs to nobody."""
        principal = self._check_token(token)
        if self._permissions is None:
            return principal
        return Principal(principal.name, self._permissions.grants_for(principal.name))

    def authenticate_as(self, name: str, matches: Callable[[bytes], bool]) -> Principal:
        """The principal ``name`` if ``matches`` accepts one of its tokens.

        For logins that name the principal and prove a token without sending
        it (SASL SCRAM on the Kafka port): ``matches`` gets each token of
        ``name`` in turn, all of them, without stopping at the first that
        matches, so the time taken does not tell which one did. Unauthorized
        if none does (or the server has no tokens: there is nothing to prove).
        """
        found = False
        for candidate, owner in self._tokens:
            if owner == name and matches(candidate):
                found = True
        if not found:
            raise Unauthorized(f"invalid credentials for {name!r}")
        if self._permissions is None:
            return Principal(name)
        return Principal(name, self._permissions.grants_for(name))

    def _check_token(self, token: str | None) -> Principal:
        if not self._tokens:
            return ANONYMOUS
        if token is None:
            raise Unauthorized("this server requires a token in hello")
        given = token.encode()
        found: str | None = None
        # Compare against every token, without stopping early, in constant time each.
        for candidate, name in self._tokens:
            if hmac.compare_digest(candidate, given):
                found = name
        if found is None:
            raise Unauthorized("invalid token")
        return Principal(found)


def load_tokens_file(path: str) -> dict[str, str]:
    """Read a tokens file: one ``token`` or ``name:token`` per line, '#' comments."""
    tokens: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, token = line.partition(":")
            if not sep:
                name, token = f"token{number}", line
            if not token.strip():
                raise ValueError(f"{path}:{number}: empty token")
            tokens[token.strip()] = name.strip()
    return tokens
