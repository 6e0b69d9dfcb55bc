"""AMQP exchanges: names, types, declarations and the bindings kept here.

Where a message goes is decided by the exchange's type:

* the default exchange ``""`` routes to the queue named by the routing key;
* ``direct``: to the queues bound with exactly that key;
* ``fanout``: to every bound queue;
* ``headers``: to the queues whose binding arguments match the message's
  headers table (``x-match`` ``all``, ``any``, ``all-with-x`` or ``any-with-x``);
* ``topic``: through the core's topic trie. Its bindings are the core's
  queue bindings (``Topics.bind``), so topic routing, durable bindings and
  cross-door delivery are the core's; :func:`topic_name` says which core
  topic an exchange and routing key stand for.

Direct, fanout and headers bindings are plain dicts here: a lookup by key is
all they need (a trie would only add work).

Exchange-to-exchange bindings (Exchange.Bind) are kept apart, in
``Exchange.exchange_bindings``, whatever the source's type (a topic source
matches their keys with :func:`topic_matches`): an exchange with none
routes exactly as before, and the vhost follows them only when there are
some (see ``Vhost.route``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from minibroker.amqp.decoding import field_type_name

DIRECT: Final = "direct"
FANOUT: Final = "fanout"
TOPIC: Final = "topic"
HEADERS: Final = "headers"
TYPES: Final = (DIRECT, FANOUT, TOPIC, HEADERS)
DEFAULT: Final = ""
#: The topic exchange whose routing keys are the core's topic names unchanged.
AMQ_TOPIC: Final = "amq.topic"
#: Exchanges every vhost has from the start (RabbitMQ's set).
PREDECLARED: Final = {
    "amq.direct": DIRECT,
    "amq.fanout": FANOUT,
    AMQ_TOPIC: TOPIC,
    "amq.headers": HEADERS,
    "amq.match": HEADERS,
}


def topic_name(exchange: str, key: str) -> str:
    """The core topic (or pattern) for a routing (or binding) key of a topic exchange.

    ``amq.topic`` maps keys to topics unchanged, so AMQP and native clients
    share one topic space there. Any other topic exchange ``E`` lives under
    ``E.`` (key ``""`` is ``E`` itself), so exchanges do not see each other's
    messages, and ``#`` still matches zero words (``E.#`` matches ``E``).
    """
    if exchange == AMQ_TOPIC:
        return key
    return exchange if key == "" else f"{exchange}.{key}"


@dataclass(eq=False)
class Exchange:
    name: str
    type: str
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    arguments: dict[str, object] = field(default_factory=dict)
    #: direct/fanout/headers: (queue, binding key) -> binding arguments.
    bindings: dict[tuple[str, str], dict[str, object]] = field(default_factory=dict)
    #: direct: binding key -> queues bound with it.
    _by_key: dict[str, dict[str, None]] = field(default_factory=dict)
    #: Exchange.Bind: (destination exchange, binding key) -> binding arguments.
    exchange_bindings: dict[tuple[str, str], dict[str, object]] = field(default_factory=dict)

    def same_declaration(
        self, type_: str, durable: bool, auto_delete: bool, internal: bool, arguments: object
    ) -> str | None:
        """None if a redeclaration matches, else the name of the first argument that differs."""
        if type_ != self.type:
            return "type"
        if durable != self.durable:
            return "durable"
        if auto_delete != self.auto_delete:
            return "auto_delete"
        if internal != self.internal:
            return "internal"
        if (arguments or {}) != self.arguments:
            return "arguments"
        return None

    def bind(self, queue: str, key: str, arguments: dict[str, object]) -> None:
        self.bindings[(queue, key)] = arguments
        self._by_key.setdefault(key, {})[queue] = None

    def unbind(self, queue: str, key: str) -> bool:
        if self.bindings.pop((queue, key), None) is None:
            return False
        queues = self._by_key[key]
        del queues[queue]
        if not queues:
            del self._by_key[key]
        return True

    def drop_queue(self, queue: str) -> list[str]:
        """Forget every binding of ``queue``; returns their keys."""
        keys = [key for q, key in self.bindings if q == queue]
        for key in keys:
            self.unbind(queue, key)
        return keys

    def route(self, key: str, headers: Mapping[str, object] | None) -> list[str]:
        """The queues a message with ``key`` (and ``headers``) goes to, once each."""
        if self.type == DIRECT:
            return list(self._by_key.get(key, ()))
        if self.type == FANOUT:
            return list(dict.fromkeys(q for q, _ in self.bindings))
        if self.type == HEADERS:
            return list(
                dict.fromkeys(
                    q for (q, _), args in self.bindings.items() if headers_match(args, headers)
                )
            )
        return []

    def bind_exchange(self, destination: str, key: str, arguments: dict[str, object]) -> None:
        self.exchange_bindings[(destination, key)] = arguments

    def unbind_exchange(self, destination: str, key: str) -> bool:
        return self.exchange_bindings.pop((destination, key), None) is not None

    def drop_exchange(self, destination: str) -> list[str]:
        """Forget every binding to ``destination``; returns their keys."""
        keys = [key for dest, key in self.exchange_bindings if dest == destination]
        for key in keys:
            del self.exchange_bindings[(destination, key)]
        return keys

    def route_exchanges(self, key: str, headers: Mapping[str, object] | None) -> list[str]:
        """The exchanges bound to this one that a message with ``key`` goes on to."""
        found: dict[str, None] = {}
        for (destination, binding_key), args in self.exchange_bindings.items():
            if self.type == DIRECT:
                hit = binding_key == key
            elif self.type == FANOUT:
                hit = True
            elif self.type == TOPIC:
                hit = topic_matches(binding_key, key)
            else:
                hit = headers_match(args, headers)
            if hit:
                found[destination] = None
        return list(found)


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP's topic rule: words split at dots, ``*`` one word, ``#`` zero or more."""
    wanted, words = pattern.split("."), key.split(".")
    # reachable[j]: the pattern so far can match the first j words.
    reachable = [True] + [False] * len(words)
    for part in wanted:
        if part == "#":
            for j in range(1, len(words) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            reachable = [False] + [
                reachable[j] and (part == "*" or part == words[j]) for j in range(len(words))
            ]
    return reachable[-1]


#: ``x-match`` values and whether each matches ``x-`` arguments too.
X_MATCH: Final = {"all": False, "any": False, "all-with-x": True, "any-with-x": True}


def headers_match(binding: Mapping[str, object], headers: Mapping[str, object] | None) -> bool:
    """RabbitMQ's headers-exchange rule: ``x-match`` all (default) or any of the
    other arguments; ``all-with-x``/``any-with-x`` count ``x-`` arguments too.
    An argument without a value (void) asks only for the header's presence."""
    mode = binding.get("x-match", "all")
    with_x = X_MATCH.get(mode, False)  # type: ignore[call-overload]
    wanted = [
        (k, v)
        for k, v in binding.items()
        if k != "x-match" and (with_x or not k.startswith("x-"))
    ]
    headers = headers or {}
    hits = (k in headers and (v is None or headers[k] == v) for k, v in wanted)
    if mode in ("any", "any-with-x"):
        return any(hits)
    return all(hits)


def x_match_problem(arguments: Mapping[str, object]) -> str | None:
    """Why a headers binding's ``x-match`` is refused (RabbitMQ's words), or None."""
    if "x-match" not in arguments:
        return None
    mode = arguments["x-match"]
    if type(mode) is not str:
        return (
            f"Invalid x-match field type {field_type_name(mode)} "
            f"(value {erlang_term(mode)}); expected longstr"
        )
    if mode not in X_MATCH:
        return (
            f"Invalid x-match field value {erlang_term(mode)}; "
            "expected all, any, all-with-x, or any-with-x"
        )
    return None


def erlang_term(value: object) -> str:
    """How RabbitMQ prints a value in its error texts (binaries as ``<<"...">>``)."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return f'<<"{value}">>'
    return repr(value)
