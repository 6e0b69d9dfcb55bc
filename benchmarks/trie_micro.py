"""Micro-benchmark: topic matching cost vs. the number of subscriptions.

The claim to check: matching a topic costs the same whether the trie holds one
pattern or ten thousand, because the walk follows the topic's words and never
scans the subscriptions. Run::

    python benchmarks/trie_micro.py

It prints matches per second for a topic that matches a few patterns, with
the match cache off (every call walks the trie) and on (repeated topic), plus
the cost of validating a topic name with split_topic.
"""

from __future__ import annotations

import random
import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minibroker.core import names
from minibroker.core.names import split_pattern, split_topic
from minibroker.core.trie import SubscriptionTrie

TOPIC = "orders.eu.created"
#: Patterns that match TOPIC; every trie below holds these.
MATCHING = ["orders.eu.created", "orders.*.created", "orders.#", "#.created"]


def filler_patterns(count: int, seed: int = 1) -> list[str]:
    """``count`` distinct patterns, literal and wildcard, that do not match TOPIC.

    They share TOPIC's first words and wildcard positions on purpose, so that
    the walk for TOPIC passes through crowded nodes (big literal dicts under
    ``orders``, under ``*`` and under ``#``) rather than a quiet corner.
    """
    rng = random.Random(seed)
    shapes = [
        "orders.{w}.created",  # literal siblings of "eu"
        "orders.eu.{w}",  # literal siblings of "created"
        "orders.*.{w}",  # under the star
        "{w}.*.created",  # other first words
        "#.{w}",  # under the root hash
        "orders.#.{w}",  # under a middle hash
        "*.{w}.#",
        "{w}.#",
    ]
    found: set[str] = set()
    while len(found) < count:
        word = f"w{rng.randrange(10 * count)}"
        found.add(rng.choice(shapes).format(w=word))
    return sorted(found)


def build(count: int, cache_size: int) -> SubscriptionTrie[int]:
    trie: SubscriptionTrie[int] = SubscriptionTrie(cache_size=cache_size)
    for i, pattern in enumerate(MATCHING + filler_patterns(count - len(MATCHING))):
        trie.insert(split_pattern(pattern), i)
    return trie


def rate(call: Callable[[], object]) -> float:
    """Calls per second, best of 5 runs of about 0.2 s each."""
    timer = timeit.Timer(call)
    number, _ = timer.autorange()
    best = min(timer.repeat(repeat=5, number=number))
    return number / best


def main() -> None:
    words = split_topic(TOPIC)
    print(f"python {sys.version.split()[0]}; topic {TOPIC!r} matches {len(MATCHING)} patterns")
    print(f"{'patterns':>9} {'nodes':>7} {'cache':>5} {'as':>6} {'matches/s':>12} {'µs/match':>9}")
    for count in (len(MATCHING), 10_000):
        for cache_size in (0, 1024):
            trie = build(count, cache_size)
            assert trie.match(words) == (0, 1, 2, 3), trie.match(words)
            for label, topic in (("words", words), ("string", TOPIC)):
                per_second = rate(partial(trie.match, topic))
                print(
                    f"{len(trie):>9} {trie.node_count:>7} {'on' if cache_size else 'off':>5}"
                    f" {label:>6} {per_second:>12,.0f} {1e6 / per_second:>9.2f}"
                )
    single: SubscriptionTrie[int] = SubscriptionTrie(cache_size=0)
    single.insert(split_pattern("orders.eu.created"), 0)
    print(f"1 literal pattern, no cache: {1e6 / rate(lambda: single.match(words)):.2f} µs/match")
    patterns = [split_pattern(p) for p in filler_patterns(10_000, seed=2)]
    churn: SubscriptionTrie[int] = build(10_000, 1024)

    def subscribe_unsubscribe() -> None:
        for i, pattern in enumerate(patterns):
            churn.insert(pattern, -i)
        for i, pattern in enumerate(patterns):
            churn.remove(pattern, -i)

    per_pair = 1e6 / (rate(subscribe_unsubscribe) * len(patterns))
    print(f"insert + remove, 10k patterns: {per_pair:.2f} µs per pair")
    raw = names._split_topic.__wrapped__  # the validation itself, without the LRU cache
    print(f"split_topic (cached):        {1e6 / rate(lambda: split_topic(TOPIC)):.3f} µs/call")
    print(f"split_topic (uncached):      {1e6 / rate(lambda: raw(TOPIC)):.3f} µs/call")


if __name__ == "__main__":
    main()
