"""X-ray: an opt-in, sampled trace of what the broker does with one request.

Off by default and then free: ``Broker.xray`` is None, and the one place
that looks at it per request (``Session._dispatch``, and the HTTP face's
operations) pays one attribute check. Turned on (``Broker.xray =
Xray(...)``, from the HTTP face or ``minibroker trace``), it follows the
requests whose name matches a topic-style pattern, one in
``sample_every``, and records for each a timeline of steps:

* **decode**: the operation the front end decoded, its name, how many
  messages or records, how many body bytes;
* **trie match** (publish): where the topic routes now, which
  subscriptions, groups and bound queues, timed on its own;
* the **core operation** itself (put, fetch, publish, append, ...), timed,
  with what it did: copies routed, deliveries handed out, first offset;
* **deliveries**: per subscriber connection, the copies now buffered for it
  and their bytes;
* **fsync batch** (durable writes under group commit): which group commit
  covered the write, how many traced writes it covered and how long the
  fsync took; the confirm goes out after it.

Every step names the function that did the work as ``path::symbol`` (the
form docs/internals.md uses; tests/docs checks that each one exists), so a
reader can go from the timeline straight to the code.

The clock is handed in (``time.perf_counter`` in the server), like ``now``
everywhere else in the core, so the tracer itself does no I/O. Memory is
bounded: the last ``keep`` traces, and at most ``keep`` waiting for fsync.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from minibroker.core.trie import SubscriptionTrie
from minibroker.value_class import Value, field

if TYPE_CHECKING:
    from minibroker.core.namespace import Namespace

T = TypeVar("T")

#: Where each step's work is done, in docs/internals.md's ``path::symbol`` form.
SOURCES: Final[dict[str, str]] = {
    "decode": "minibroker/protocol/codec.py::decode_request",
    "decode.http": "minibroker/http/fields.py::parse_fields",
    "trie match": "minibroker/core/topics.py::Topics.match",
    "publish": "minibroker/core/topics.py::Topics.publish",
    "deliveries": "minibroker/core/topics.py::TopicSubscription.push",
    "put": "minibroker/core/queues.py::Queue.put",
    "fetch": "minibroker/core/queues.py::Queue.fetch",
    "ack": "minibroker/core/queues.py::Queue.ack",
    "nack": "minibroker/core/queues.py::Queue.nack",
    "append": "minibroker/core/logs.py::Logs.append",
    "read": "minibroker/core/logs.py::Logs.read",
    "request": "minibroker/core/rpc.py::RequestRouter.request",
    "fsync batch": "minibroker/core/durability.py::Durability.sync",
}
#: The operations x-ray follows (the others have no message path to show).
TRACED_OPS: Final = frozenset(
    {"publish", "put", "fetch", "ack", "nack", "append", "read", "request"}
)
#: Names whose filter answer is remembered, at most (then forgotten at once).
MAX_REMEMBERED_NAMES: Final = 4096
#: Frame fields that name what an operation works on, in the order tried.
_NAME_FIELDS: Final = ("topic", "queue", "log", "subject")


class Step(Value):
    """One thing the broker did, ``at_us`` after the trace began, for ``took_us``."""

    name: str
    source: str
    at_us: float
    took_us: float
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "source": self.source,
            "at_us": round(self.at_us, 1),
            "took_us": round(self.took_us, 1),
            "detail": self.detail,
        }


class Trace(Value):
    """The timeline of one request."""

    id: int
    op: str
    name: str
    namespace: str
    connection: int
    started: float
    steps: list[Step] = field(default_factory=list)
    #: The write generation a group commit must reach before the confirm.
    waits_for: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "op": self.op,
            "name": self.name,
            "namespace": self.namespace,
            "connection": self.connection,
            "steps": [s.to_dict() for s in self.steps],
            "waiting_for_fsync": self.waits_for is not None,
        }


class Xray:
    """The tracer: which requests to follow, and the last traces it recorded."""

    def __init__(
        self,
        clock: Callable[[], float],
        pattern: str = "#",
        *,
        sample_every: int = 1,
        keep: int = 100,
    ) -> None:
        self._clock = clock
        self.pattern = pattern
        self._filter: SubscriptionTrie[bool] = SubscriptionTrie()
        self._filter.insert(pattern, True)  # raises InvalidName for a bad pattern
        #: name -> whether the pattern matches it (a trie walk per request is
        #: most of what tracing costs when the name does not match).
        self._chosen: dict[str, bool] = {}
        if type(sample_every) is not int or sample_every < 1:
            raise ValueError("sample_every must be a positive integer")
        self.sample_every = sample_every
        self.traces: deque[Trace] = deque(maxlen=keep)
        self._awaiting_fsync: deque[Trace] = deque(maxlen=keep)
        self._ids = itertools.count(1)
        self._seen = 0
        #: Called after each recorded trace or step (the shell wakes watchers).
        self.on_change: Callable[[], None] | None = None

    # -------------------------------------------------------------- choose

    def _wants(self, op: str, name: str) -> bool:
        if op not in TRACED_OPS or not name:
            return False
        chosen = self._chosen.get(name)
        if chosen is None:
            if len(self._chosen) >= MAX_REMEMBERED_NAMES:
                self._chosen.clear()
            chosen = self._chosen[name] = bool(self._filter.match(name))
        if not chosen:
            return False
        self._seen += 1
        return self._seen % self.sample_every == 0

    # --------------------------------------------------------------- trace

    def trace_frame(
        self, ns: Namespace | None, conn_id: int, frame: Any, run: Callable[[], T]
    ) -> T:
        """Run ``run`` (a front end's handler for ``frame``), traced if it is chosen
        (``ns`` is None before the connection's hello: nothing to trace yet)."""
        op: str = frame.op
        if ns is None or op not in TRACED_OPS:
            return run()
        # A plain loop, not next(<generator>): this runs for every frame while
        # tracing is on, matching or not, and a generator costs more than the rest.
        name = ""
        for name_field in _NAME_FIELDS:
            value = getattr(frame, name_field, None)
            if isinstance(value, str):
                name = value
                break
        if not self._wants(op, name):
            return run()
        return self._traced(ns, conn_id, op, name, _summary(frame), "decode", run)

    def trace_call(
        self,
        ns: Namespace,
        conn_id: int,
        op: str,
        name: str,
        params: dict[str, Any],
        run: Callable[[], T],
    ) -> T:
        """Like :meth:`trace_frame` for an operation already parsed to ``params`` (HTTP)."""
        if not self._wants(op, name):
            return run()
        return self._traced(ns, conn_id, op, name, _summary_of_params(params), "decode.http", run)

    def _traced(
        self,
        ns: Namespace,
        conn_id: int,
        op: str,
        name: str,
        summary: dict[str, Any],
        decoder: str,
        run: Callable[[], T],
    ) -> T:
        clock = self._clock
        trace = Trace(next(self._ids), op, name, ns.name, conn_id, clock())
        trace.steps.append(
            Step("decode", SOURCES[decoder], 0.0, 0.0, {"op": op, "name": name, **summary})
        )
        route = None
        if op == "publish":
            began = clock()
            route = ns.topics.match(name)
            self._step(
                trace,
                "trie match",
                began,
                {
                    "subscriptions": [s.pattern for s in route.subscriptions],
                    "groups": [g.name for g, _ in route.groups],
                    "queues": [q.name for q in route.queues],
                },
            )
        durability = ns.broker.durability
        generation = durability.generation
        began = clock()
        result = run()
        self._step(trace, op, began, _outcome(result))
        if route is not None:
            subscribers = [*route.subscriptions, *(m for _, ms in route.groups for m in ms)]
            self._step(
                trace,
                "deliveries",
                clock(),
                {
                    "buffered": [
                        {
                            "connection": s.peer.conn_id,
                            "pattern": s.pattern,
                            "waiting": len(s.items),
                            "bytes": s.held_bytes,
                        }
                        for s in subscribers
                    ]
                },
            )
        if durability.must_hold(generation):
            trace.waits_for = durability.generation
            self._awaiting_fsync.append(trace)
        self.traces.append(trace)
        self._changed()
        return result

    def _step(self, trace: Trace, name: str, began: float, detail: dict[str, Any]) -> None:
        now = self._clock()
        trace.steps.append(
            Step(name, SOURCES[name], (began - trace.started) * 1e6, (now - began) * 1e6, detail)
        )

    def synced(self, generation: int, seconds: float) -> None:
        """A group commit fsynced every write up to ``generation`` in ``seconds``."""
        covered = [
            t for t in self._awaiting_fsync if t.waits_for is not None and t.waits_for <= generation
        ]
        if not covered:
            return
        now = self._clock()
        for trace in covered:
            self._awaiting_fsync.remove(trace)
            trace.waits_for = None
            began = now - seconds
            trace.steps.append(
                Step(
                    "fsync batch",
                    SOURCES["fsync batch"],
                    (began - trace.started) * 1e6,
                    seconds * 1e6,
                    {"generation": generation, "traced_writes_in_batch": len(covered)},
                )
            )
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def recent(self, after: int = 0) -> list[dict[str, Any]]:
        """The kept traces with an id above ``after``, oldest first."""
        return [t.to_dict() for t in self.traces if t.id > after]


def _summary(frame: Any) -> dict[str, Any]:
    """How many messages or records a frame carries, and their body bytes."""
    items = getattr(frame, "messages", None) or getattr(frame, "records", None)
    if items is not None:
        bodies = [i if isinstance(i, bytes) else getattr(i, "body", b"") for i in items]
        return {"items": len(bodies), "body_bytes": sum(len(b) for b in bodies)}
    body = getattr(frame, "body", None)
    if isinstance(body, bytes):
        return {"items": 1, "body_bytes": len(body)}
    deliveries = getattr(frame, "deliveries", None)
    if isinstance(deliveries, list | tuple):
        return {"deliveries": len(deliveries)}
    return {}


def _summary_of_params(params: dict[str, Any]) -> dict[str, Any]:
    for key in ("messages", "records"):
        items = params.get(key)
        if items:
            bodies = [i.body if hasattr(i, "body") else i[2] for i in items]
            return {"items": len(bodies), "body_bytes": sum(len(b) for b in bodies)}
    for key in ("body", "body_base64"):
        if params.get(key) is not None:
            return {"items": 1}
    if params.get("deliveries") is not None:
        return {"deliveries": len(params["deliveries"])}
    return {}


def _outcome(result: object) -> dict[str, Any]:
    """What an operation answered, reduced to numbers a timeline can show."""
    if isinstance(result, dict):
        if isinstance(result.get("bodies"), list):  # a compact fetch answer (fetch.compact)
            count = len(result["bodies"])
            first = result.get("first_id", 0)
            return {"deliveries": count, "delivery_ids": list(range(first, first + min(count, 20)))}
        if isinstance(result.get("deliveries"), list):
            result = result["deliveries"]
        else:
            return {k: v for k, v in result.items() if isinstance(v, int | str | bool)}
    if isinstance(result, list):
        ids = [d["delivery_id"] for d in result if isinstance(d, dict) and "delivery_id" in d]
        return {"deliveries": len(result), "delivery_ids": ids[:20]}
    return {"parked": True} if result is not None else {}
