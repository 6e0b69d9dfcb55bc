"""Hypothesis state machine: subscribe / unsubscribe / publish / disconnect vs a reference model.

The reference knows, for every live subscription, its pattern, group,
buffer and overflow policy, and decides with a plain recursive matcher
(written from the definition of ``*`` and ``#``) which subscriptions a topic
reaches. After every publish each buffer is drained, as a fast connection
would, and checked:

* an ungrouped subscription received exactly the batch if its pattern
  matches (minus the oldest ones, counted, when the batch exceeds its buffer
  under drop_oldest; kicked when it exceeds it under disconnect);
* a group whose members match received every message of the batch exactly
  once, spread over its matching members in publish order, shares differing
  by at most one (round robin), and nothing reached a non-matching member.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from minibroker.core.broker import Broker
from minibroker.core.topics import Topics, TopicSubscription
from minibroker.errors import BrokerError, SlowConsumer

Words = tuple[str, ...]


@cache
def matches(pattern: Words, topic: Words) -> bool:
    """Does ``pattern`` match ``topic``? Straight from the definition of * and #."""
    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return matches(rest, topic) or (bool(topic) and matches(pattern, topic[1:]))
    if not topic:
        return False
    return (head == "*" or head == topic[0]) and matches(rest, topic[1:])


class Msg:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.headers = None


class Peer:
    def __init__(self, conn_id: int) -> None:
        self._conn_id = conn_id
        self.kicked: list[BrokerError] = []

    @property
    def conn_id(self) -> int:
        return self._conn_id

    def resolve(self, token: int, result: object) -> None:
        raise AssertionError

    def reject(self, token: int, error: BrokerError) -> None:
        raise AssertionError

    def push_ready(self, source: Any) -> None:
        pass

    def kick(self, error: BrokerError) -> None:
        self.kicked.append(error)


# A tiny alphabet and short names, so that patterns, topics and groups collide often.
topics_st = st.lists(st.sampled_from("ab"), min_size=1, max_size=3).map(tuple)
patterns_st = st.lists(st.sampled_from(["a", "b", "*", "#", "#"]), min_size=1, max_size=3).map(
    tuple
)
groups_st = st.one_of(st.none(), st.sampled_from(["g1", "g2"]))


class TopicsMachine(RuleBasedStateMachine):
    subs = Bundle("subs")

    def __init__(self) -> None:
        super().__init__()
        self.broker = Broker()
        self.topics: Topics = self.broker.namespace("t").topics
        self.peers = [Peer(i) for i in range(3)]
        self.live: dict[TopicSubscription, None] = {}
        self.next_sub = 1
        self.next_body = 0

    @rule(
        target=subs,
        peer=st.integers(0, 2),
        pattern=patterns_st,
        group=groups_st,
        buffer=st.integers(1, 6),
        disconnect=st.booleans(),
    )
    def subscribe(
        self, peer: int, pattern: Words, group: str | None, buffer: int, disconnect: bool
    ) -> TopicSubscription:
        sub = self.topics.subscribe(
            self.peers[peer],
            self.next_sub,
            ".".join(pattern),
            group=group,
            buffer=buffer,
            on_overflow="disconnect" if disconnect else "drop_oldest",
        )
        self.next_sub += 1
        self.live[sub] = None
        return sub

    @rule(sub=consumes(subs))
    def unsubscribe(self, sub: TopicSubscription) -> None:
        sub.cancel(0.0)
        self.live.pop(sub, None)
        assert sub.closed

    @rule(peer=st.integers(0, 2))
    def disconnect(self, peer: int) -> None:
        gone = self.peers[peer]
        self.topics.disconnect(gone, 0.0)
        for sub in [s for s in self.live if s.peer is gone]:
            del self.live[sub]
            assert sub.closed

    @rule(topic=topics_st, count=st.integers(1, 8))
    def publish(self, topic: Words, count: int) -> None:
        bodies = [self.next_body + i for i in range(count)]
        self.next_body += count
        kicks_before = {peer: len(peer.kicked) for peer in self.peers}
        result = self.topics.publish(
            ".".join(topic), [Msg(str(b).encode()) for b in bodies], 0.0
        )
        matching = [s for s in self.live if matches(s.words, topic)]
        ungrouped = [s for s in matching if s.group is None]
        groups: dict[str, list[TopicSubscription]] = {}
        for s in matching:
            if s.group is not None:
                groups.setdefault(s.group.name, []).append(s)
        assert result.subscriptions == count * (len(ungrouped) + len(groups))
        assert result.queues == 0

        received = {s: [int(m.body) for m in s.items] for s in self.live}
        dropped = {s: s.take_dropped() for s in self.live}
        for s in self.live:
            s.items.clear()
        kicked = {s for s in self.live if s.closed}

        for s in self.live:
            if s not in matching:
                assert received[s] == [] and dropped[s] == 0
        for s in ungrouped:
            if count > s.buffer and s.on_overflow == "disconnect":
                assert s in kicked
            else:
                assert dropped[s] == max(0, count - s.buffer)
                assert received[s] == bodies[dropped[s] :]
        for members in groups.values():
            got = [b for s in members for b in received[s]]
            assert len(got) == len(set(got))
            assert set(got) <= set(bodies)
            for s in members:
                assert received[s] == sorted(received[s])
            if not any(s in kicked for s in members):
                shares = [len(received[s]) + dropped[s] for s in members]
                assert sum(shares) == count
                assert max(shares) - min(shares) <= 1
                if not any(dropped[s] for s in members):
                    assert sorted(got) == bodies

        for s in kicked:
            assert isinstance(s.peer.kicked[-1], SlowConsumer)
            del self.live[s]
        assert sum(len(p.kicked) - kicks_before[p] for p in self.peers) == len(kicked)

    @invariant()
    def counts_agree(self) -> None:
        assert self.topics.subscription_count == len(self.live)
        assert self.topics.group_count == len({s.group.name for s in self.live if s.group})
        assert set(self.topics.subscriptions()) == set(self.live)
        if not self.live:
            assert self.topics.trie_nodes == 1


TopicsMachine.TestCase.settings = settings(
    max_examples=settings.default.max_examples, stateful_step_count=30, deadline=None
)
test_topics_state_machine = TopicsMachine.TestCase
