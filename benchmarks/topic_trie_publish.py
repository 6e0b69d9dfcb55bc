"""Micro-check: publish rate with 10,000 distinct subscription patterns vs one pattern.

The claim: routing a publish costs about the same however many subscriptions
exist, because the trie walks the topic's words and never scans patterns,
and the route is cached per topic. Run::

    python benchmarks/topic_trie_publish.py [--patterns 10000] [--seconds 1]

Each scenario has one subscription that matches every published topic
(``orders.*.created``, drained as a fast connection would drain it), plus
either nothing or ``--patterns - 1`` other distinct patterns, literal and
wildcard, that share the topics' first words but never match. It measures
single-message and 100-message publishes through ``Topics.publish`` (the
core) and through a protocol ``Session`` (frame decoding and the ``ok``
response included), for

* a hot topic (the route cache answers: the common case), and
* 5,000 rotating topics, more than the 1,024-entry route cache holds, so
  every publish walks the trie (the worst case).

Rates are per second of CPU time of this process (so other load on the
machine distorts them less). Not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minibroker.core.broker import Broker
from minibroker.core.topics import Topics, TopicSubscription
from minibroker.errors import BrokerError
from minibroker.protocol.codec import pack_frame
from minibroker.protocol.session import Session

MATCHING = "orders.*.created"


class Peer:
    """A connection that drains its subscription at once (a fast subscriber)."""

    conn_id = 1

    def resolve(self, token: int, result: object) -> None: ...
    def reject(self, token: int, error: BrokerError) -> None: ...
    def push_ready(self, source: Any) -> None: ...
    def kick(self, error: BrokerError) -> None: ...


class Message:
    __slots__ = ("body", "headers")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.headers = None


def other_patterns(count: int, seed: int = 7) -> list[str]:
    """``count`` distinct patterns that never match ``orders.<region>.created``."""
    rng = random.Random(seed)
    shapes = [
        "orders.{w}.shipped",
        "orders.{w}.created.{w}",
        "orders.*.{w}",
        "{w}.*.created",
        "#.{w}",
        "orders.#.{w}",
        "*.{w}.#",
        "{w}.#",
    ]
    found: set[str] = set()
    while len(found) < count:
        word = f"w{rng.randrange(10**9)}"
        found.add(rng.choice(shapes).format(w=word))
    return sorted(found)


def topics_for(rotating: bool) -> list[str]:
    if not rotating:
        return ["orders.eu.created"]
    return [f"orders.r{i}.created" for i in range(5000)]


def rate(step: Callable[[], int], seconds: float) -> float:
    """Messages per CPU second of ``step`` (which returns how many it published)."""
    done = 0
    start = time.process_time()  # CPU time: a busy machine slows it less than wall time
    deadline = start + seconds
    while True:
        for _ in range(50):
            done += step()
        now = time.process_time()
        if now >= deadline:
            return done / (now - start)


def core_scenario(extra: int, batch: int, rotating: bool, seconds: float) -> float:
    broker = Broker()
    topics: Topics = broker.namespace("bench").topics
    peer: Any = Peer()
    sub: TopicSubscription = topics.subscribe(peer, 1, MATCHING, buffer=1_000_000)
    for i, pattern in enumerate(other_patterns(extra)):
        topics.subscribe(peer, i + 2, pattern)
    names = topics_for(rotating)
    messages = [Message(b"x" * 100) for _ in range(batch)]
    items = sub.items
    position = 0

    def step() -> int:
        nonlocal position
        topic = names[position % len(names)]
        position += 1
        topics.publish(topic, messages, 0.0)
        items.clear()
        return batch

    return rate(step, seconds)


def session_scenario(extra: int, batch: int, rotating: bool, seconds: float) -> float:
    broker = Broker()
    pub = Session(broker, 1)
    sub = Session(broker, 2)
    for session in (pub, sub):
        session.receive_data(pack_frame({"op": "hello", "id": 0, "version": 1}))
        session.data_to_send()
    sub.receive_data(
        pack_frame({"op": "subscribe", "id": 1, "pattern": MATCHING, "buffer": 1_000_000})
    )
    topics = broker.namespace("").topics
    peer: Any = Peer()
    for i, pattern in enumerate(other_patterns(extra)):
        topics.subscribe(peer, i + 2, pattern)
    body = [{"body": b"x" * 100}] * batch
    frames = [
        pack_frame({"op": "publish", "id": 2, "topic": topic, "messages": body})
        for topic in topics_for(rotating)
    ]
    position = 0

    def step() -> int:
        nonlocal position
        pub.receive_data(frames[position % len(frames)])
        position += 1
        pub.data_to_send()
        sub.data_to_send()
        return batch

    return rate(step, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patterns", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}; {args.patterns:,} patterns vs 1; messages/s")
    header = f"{'layer':8} {'topic':9} {'batch':>5} {'1 pattern':>12} {'many':>12} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for layer, scenario in (("core", core_scenario), ("session", session_scenario)):
        for rotating in (False, True):
            for batch in (1, 100):
                one = scenario(0, batch, rotating, args.seconds)
                many = scenario(args.patterns - 1, batch, rotating, args.seconds)
                print(
                    f"{layer:8} {'rotating' if rotating else 'hot':9} {batch:>5} "
                    f"{one:>12,.0f} {many:>12,.0f} {one / many:>6.2f}"
                )


if __name__ == "__main__":
    main()
