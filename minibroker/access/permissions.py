"""Per-principal permissions: who may read, write or administer which names.

Authentication (access/auth.py) says *who* a connection is: the principal
named next to its token in the tokens file. Permissions say what that
principal may do. They are optional: without a permissions file every
authenticated connection may do everything, as before. With one, everything
not granted is refused with a ``forbidden`` error (the connection stays
open), and the list operations show only the names the principal has some
grant on.

The permissions file (``minibroker serve --permissions FILE``)::

    # allow PRINCIPAL ACTIONS RESOURCE [RESOURCE ...]
    allow ci         read,write  queue:jobs.# log:events
    allow dashboard  read        #
    allow ops        all         #
    allow *          write       topic:metrics.#

* ``PRINCIPAL`` is a name from the tokens file (``name:token`` lines),
  ``token`` for the single ``--auth-token``, ``anonymous`` when the server
  has no tokens at all, or ``*`` for every principal.
* ``ACTIONS`` is a comma-separated list of ``read``, ``write`` and
  ``admin``; ``all`` means all three.
* ``RESOURCE`` is ``KIND:PATTERN``, or a bare ``PATTERN`` for every kind.
  ``KIND`` is ``queue``, ``topic``, ``log``, ``subject`` (request/reply),
  ``group`` (Kafka consumer groups) or ``*``. ``PATTERN`` uses the topic
  pattern syntax for every kind: words separated by dots, ``*`` for exactly
  one word, ``#`` for zero or more words, so ``queue:jobs.#`` covers
  ``jobs``, ``jobs.high`` and ``jobs.eu.low``, and ``#`` alone covers every
  name.
* Lines starting with ``#`` are comments (a ``#`` later on a line is a
  pattern, not a comment); blank lines are ignored. Grants add up.

What each operation needs (the table is :data:`NEEDS`; an operation missing
from it is refused, so a new operation cannot slip through unchecked):

==========================================  ===================================
operation                                   needs
==========================================  ===================================
put                                         write on queue
fetch, fetch.cancel, ack, nack,             read on queue
queue.stats/inspect
queue.declare, queue.delete/purge           admin on queue (declare: also write
                                            on its dead-letter queue)
publish                                     write on topic
subscribe                                   read on the topic pattern
bind                                        admin on queue and read on pattern
unbind                                      admin on queue
append                                      write on log
read, tail, commit, committed, log.stats    read on log
log.create, log.delete                      admin on log
request                                     write on subject
respond                                     read on subject
hello, ping, unsubscribe, reply,            nothing (reply answers a request
request.cancel, pause, resume               this connection was handed,
                                            request.cancel withdraws one it
                                            sent; the others act on its own
                                            subscriptions)
queue.list, log.list                        nothing; only names with a grant
                                            are listed
namespace.drop                              admin on ``#`` of every kind (it
                                            deletes every name there is)
==========================================  ===================================

A subscription pattern is allowed only if the grant covers every topic the
pattern could match: ``topic:orders.#`` allows subscribing to ``orders.*``
and ``orders.eu.#``, while ``topic:orders.*`` does not allow ``orders.#``
(which also matches ``orders.eu.created``).

Names are checked the same way in every namespace: namespaces separate
names, they are not a security boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from minibroker.errors import Forbidden
from minibroker.value_class import Value

READ: Final = "read"
WRITE: Final = "write"
ADMIN: Final = "admin"
ACTIONS: Final = (READ, WRITE, ADMIN)

QUEUE: Final = "queue"
TOPIC: Final = "topic"
LOG: Final = "log"
SUBJECT: Final = "subject"
#: Kafka consumer groups (the Kafka port checks them; docs/kafka.md).
GROUP: Final = "group"
KINDS: Final = (QUEUE, TOPIC, LOG, SUBJECT, GROUP)

#: The principal name that stands for every principal in a permissions file.
EVERYONE: Final = "*"

_STAR: Final = "*"
_HASH: Final = "#"

#: op -> (action, kind, frame field naming the resource) for every check it needs.
#: A field that is nil in the frame (an optional dead-letter queue) needs nothing.
NEEDS: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {
    "queue.declare": ((ADMIN, QUEUE, "queue"), (WRITE, QUEUE, "dead_letter_queue")),
    "queue.delete": ((ADMIN, QUEUE, "queue"),),
    "queue.purge": ((ADMIN, QUEUE, "queue"),),
    "queue.stats": ((READ, QUEUE, "queue"),),
    "queue.inspect": ((READ, QUEUE, "queue"),),
    "put": ((WRITE, QUEUE, "queue"),),
    "fetch": ((READ, QUEUE, "queue"),),
    "fetch.cancel": ((READ, QUEUE, "queue"),),
    "ack": ((READ, QUEUE, "queue"),),
    "nack": ((READ, QUEUE, "queue"),),
    "publish": ((WRITE, TOPIC, "topic"),),
    "subscribe": ((READ, TOPIC, "pattern"),),
    "bind": ((ADMIN, QUEUE, "queue"), (READ, TOPIC, "pattern")),
    "unbind": ((ADMIN, QUEUE, "queue"),),
    "log.create": ((ADMIN, LOG, "log"),),
    "log.delete": ((ADMIN, LOG, "log"),),
    "log.stats": ((READ, LOG, "log"),),
    "append": ((WRITE, LOG, "log"),),
    "read": ((READ, LOG, "log"),),
    "tail": ((READ, LOG, "log"),),
    "commit": ((READ, LOG, "log"),),
    "committed": ((READ, LOG, "log"),),
    "request": ((WRITE, SUBJECT, "subject"),),
    "respond": ((READ, SUBJECT, "subject"),),
}

#: Operations every authenticated connection may use.
OPEN: Final = frozenset(
    {"hello", "ping", "unsubscribe", "reply", "request.cancel", "pause", "resume"}
)

#: Operations on every name at once: they need ``admin`` on ``#`` of every kind.
ADMIN_OF_EVERYTHING: Final = frozenset({"namespace.drop"})

ResultFilter = Callable[[Any], Any]

#: What one operation needs: the (action, kind, field) checks on the names it
#: carries, or one of the rules below.
Permission = tuple[tuple[str, str, str], ...] | str
#: Open to every authenticated connection (``OPEN``).
ANYONE: Final = "anyone"
#: ``admin`` on ``#`` of every kind (``ADMIN_OF_EVERYTHING``).
EVERYTHING: Final = "everything"
#: Open, but the answer lists only the queues (logs) the principal may see.
VISIBLE_QUEUES: Final = "visible queues"
VISIBLE_LOGS: Final = "visible logs"
#: In no table: refused to everyone, so a new operation cannot slip through.
UNCLASSIFIED: Final = "unclassified"


def permission_for(op: str) -> Permission:
    """What ``op`` needs, from the tables above (looked up once, by the op table)."""
    needs = NEEDS.get(op)
    if needs is not None:
        return needs
    if op in OPEN:
        return ANYONE
    if op in ADMIN_OF_EVERYTHING:
        return EVERYTHING
    if op == "queue.list":
        return VISIBLE_QUEUES
    if op == "log.list":
        return VISIBLE_LOGS
    return UNCLASSIFIED

#: How many answers one connection's Grants remembers before starting over.
_MEMO_SIZE: Final = 4096


def split_words(name: str) -> tuple[str, ...]:
    """The words of a name or pattern (queue and log names split at dots too)."""
    return tuple(name.split("."))


def covers(grant: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    """True if every name that ``wanted`` can match is matched by ``grant``.

    Both are topic patterns split into words (a plain name is a pattern
    without wildcards). ``#`` in the grant absorbs any run of words,
    wildcards included; ``*`` in the grant absorbs one word that is not
    ``#``; a ``#`` in ``wanted`` (which may stand for many words) is covered
    only by a ``#`` in the grant. Dynamic programming over suffixes:
    ``ok[i][j]`` says whether ``grant[i:]`` covers ``wanted[j:]``.
    """
    n, m = len(grant), len(wanted)
    ok = [[False] * (m + 1) for _ in range(n + 1)]
    ok[n][m] = True
    for i in range(n - 1, -1, -1):
        word = grant[i]
        row, below = ok[i], ok[i + 1]
        for j in range(m, -1, -1):
            if word == _HASH:
                row[j] = below[j] or (j < m and row[j + 1])
            elif j == m:
                row[j] = False
            elif word == _STAR:
                row[j] = wanted[j] != _HASH and below[j + 1]
            else:
                row[j] = wanted[j] == word and below[j + 1]
    return ok[0][0]


class Grant(Value, frozen=True):
    """One resource of one ``allow`` line: actions on names of a kind."""

    actions: frozenset[str]
    #: None: every kind.
    kind: str | None
    pattern: tuple[str, ...]

    def allows(self, action: str, kind: str, wanted: tuple[str, ...]) -> bool:
        return (
            action in self.actions
            and (self.kind is None or self.kind == kind)
            and covers(self.pattern, wanted)
        )


class Grants:
    """What one principal may do; each connection gets its own (it memoizes)."""

    __slots__ = ("_grants", "_memo", "principal")

    def __init__(self, principal: str, grants: Iterable[Grant]) -> None:
        self.principal = principal
        self._grants = tuple(grants)
        self._memo: dict[tuple[str, str, str], bool] = {}

    def allows(self, action: str, kind: str, name: str) -> bool:
        """May this principal do ``action`` on ``name`` (a name or a pattern) of ``kind``?"""
        key = (action, kind, name)
        answer = self._memo.get(key)
        if answer is None:
            wanted = split_words(name)
            answer = any(g.allows(action, kind, wanted) for g in self._grants)
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = answer
        return answer

    def allows_any(self, kind: str, name: str) -> bool:
        return any(self.allows(action, kind, name) for action in ACTIONS)

    def require(self, action: str, kind: str, name: str) -> None:
        if not self.allows(action, kind, name):
            raise Forbidden(
                f"{self.principal!r} may not {action} {kind} {name!r}",
                action=action,
                kind=kind,
                name=name,
            )

    def authorize(self, permission: Permission, frame: Any) -> ResultFilter | None:
        """Raise Forbidden unless ``frame`` is allowed by ``permission`` (its op's,
        from :func:`permission_for`); for list operations, return the filter
        that keeps only the names this principal may see."""
        if type(permission) is tuple:
            for action, kind, field in permission:
                name = getattr(frame, field)
                if name is not None:
                    self.require(action, kind, name)
            return None
        if permission == ANYONE:
            return None
        if permission == EVERYTHING:
            for kind in KINDS:
                self.require(ADMIN, kind, _HASH)
            return None
        if permission == VISIBLE_QUEUES:
            return self._visible_queues
        if permission == VISIBLE_LOGS:
            return self._visible_logs
        op = frame.op
        raise Forbidden(f"{op!r} is not covered by permissions", op=op)

    def _visible_queues(self, result: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [item for item in result if self.allows_any(QUEUE, item["queue"])]

    def _visible_logs(self, result: list[str]) -> list[str]:
        return [name for name in result if self.allows_any(LOG, name)]


class Permissions:
    """A parsed permissions file: the grants of each principal."""

    def __init__(self, rules: dict[str, list[Grant]]) -> None:
        self._rules = {principal: tuple(grants) for principal, grants in rules.items()}

    @property
    def principals(self) -> list[str]:
        """Principals named in the file (``*`` included if used)."""
        return sorted(self._rules)

    def grants_of(self, principal: str) -> tuple[Grant, ...]:
        """The grants written for ``principal`` itself (``*`` lines not added)."""
        return self._rules.get(principal, ())

    def grants_for(self, principal: str) -> Grants:
        """A fresh Grants for one connection of ``principal``."""
        own = self._rules.get(principal, ())
        shared = self._rules.get(EVERYONE, ()) if principal != EVERYONE else ()
        return Grants(principal, own + shared)

    @classmethod
    def parse(cls, text: str, source: str = "<permissions>") -> Permissions:
        """Parse the file format in the module docstring; ValueError names the bad line."""
        rules: dict[str, list[Grant]] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                principal, grants = _parse_line(line)
            except ValueError as exc:
                raise ValueError(f"{source}:{number}: {exc}") from None
            rules.setdefault(principal, []).extend(grants)
        return cls(rules)


def _parse_line(line: str) -> tuple[str, list[Grant]]:
    parts = line.split()
    if parts[0] != "allow":
        raise ValueError(f"expected 'allow PRINCIPAL ACTIONS RESOURCE...', got {line!r}")
    if len(parts) < 4:
        raise ValueError("an allow line needs a principal, actions and at least one resource")
    principal, actions_text, resources = parts[1], parts[2], parts[3:]
    actions = _parse_actions(actions_text)
    return principal, [_parse_resource(actions, text) for text in resources]


def _parse_actions(text: str) -> frozenset[str]:
    actions: set[str] = set()
    for word in text.split(","):
        if word == "all":
            actions.update(ACTIONS)
        elif word in ACTIONS:
            actions.add(word)
        else:
            raise ValueError(f"unknown action {word!r}; use read, write, admin or all")
    return frozenset(actions)


def _parse_resource(actions: frozenset[str], text: str) -> Grant:
    kind: str | None = None
    pattern = text
    if ":" in text:
        kind_text, _, pattern = text.partition(":")
        if kind_text != _STAR:
            if kind_text not in KINDS:
                raise ValueError(
                    f"unknown kind {kind_text!r} in {text!r}; use {', '.join(KINDS)} or *"
                )
            kind = kind_text
    if not pattern:
        raise ValueError(f"resource {text!r} has an empty pattern")
    words = split_words(pattern)
    for word in words:
        if word not in (_STAR, _HASH) and (_STAR in word or _HASH in word):
            raise ValueError(
                f"pattern {pattern!r}: '*' and '#' must each be a whole word, e.g. 'jobs.#'"
            )
    return Grant(actions, kind, words)


def load_permissions_file(path: str) -> Permissions:
    """Read and parse a permissions file (OSError or ValueError on trouble)."""
    with open(path, encoding="utf-8") as fh:
        return Permissions.parse(fh.read(), source=path)
