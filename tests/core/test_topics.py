"""Unit tests of the topic model (minibroker.core.topics), driven directly: no protocol, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig, Limits
from minibroker.core.queues import QueueOptions
from minibroker.core.topics import (
    DEFAULT_BUFFER_BYTES,
    PublishResult,
    Topics,
    TopicSubscription,
)
from minibroker.errors import (
    BadRequest,
    BrokerError,
    InvalidName,
    NotFound,
    SlowConsumer,
    StorageFull,
    TooLarge,
)


@dataclass
class In:
    body: bytes
    headers: dict[str, str] | None = None


class FakePeer:
    """Records what the core tells a connection."""

    def __init__(self, conn_id: int) -> None:
        self._conn_id = conn_id
        self.ready: list[Any] = []
        self.kicked: list[BrokerError] = []

    @property
    def conn_id(self) -> int:
        return self._conn_id

    def resolve(self, token: int, result: object) -> None:
        raise AssertionError("topics never park requests")

    def reject(self, token: int, error: BrokerError) -> None:
        raise AssertionError("topics never park requests")

    def push_ready(self, source: Any) -> None:
        self.ready.append(source)

    def kick(self, error: BrokerError) -> None:
        self.kicked.append(error)


class World:
    def __init__(self, limits: Limits | None = None) -> None:
        self.broker = Broker(CoreConfig(limits=limits or Limits()))
        self.ns = self.broker.namespace("t")
        self.topics: Topics = self.ns.topics
        self.now = 10.0
        self._next_sub = 1

    def sub(self, pattern: str, peer: FakePeer | None = None, **options: Any) -> TopicSubscription:
        sub_id = self._next_sub
        self._next_sub += 1
        return self.topics.subscribe(peer or FakePeer(sub_id), sub_id, pattern, **options)

    def publish(self, topic: str, *bodies: bytes | str) -> PublishResult:
        messages = [In(b.encode() if isinstance(b, str) else b) for b in bodies]
        return self.topics.publish(topic, messages, self.now)


def take(sub: TopicSubscription) -> list[str]:
    """Drain a subscription's buffer as the connection would; bodies as text."""
    bodies = [m.body.decode() for m in sub.items]
    sub.clear()
    return bodies


# ------------------------------------------------------------------ fan-out


def test_every_matching_subscription_gets_a_copy() -> None:
    w = World()
    exact = w.sub("orders.created")
    star = w.sub("orders.*")
    hash_ = w.sub("orders.#")
    other = w.sub("payments.*")
    assert w.publish("orders.created", "m1") == PublishResult(subscriptions=3, queues=0)
    assert take(exact) == take(star) == take(hash_) == ["m1"]
    assert take(other) == []


def test_wildcards_follow_rabbitmq_rules() -> None:
    w = World()
    star = w.sub("orders.*")
    hash_ = w.sub("orders.#")
    w.publish("orders", "zero words")
    w.publish("orders.eu.created", "two words")
    assert take(star) == []
    assert take(hash_) == ["zero words", "two words"]


def test_batch_counts_are_totals_and_order_is_kept() -> None:
    w = World()
    a = w.sub("t")
    b = w.sub("#")
    assert w.publish("t", "1", "2", "3") == PublishResult(6, 0)
    assert take(a) == take(b) == ["1", "2", "3"]


def test_nobody_listening() -> None:
    w = World()
    assert w.publish("quiet.topic", "x") == PublishResult(0, 0)
    assert w.topics.stats.unrouted == 1
    assert w.topics.stats.published == 1


def test_messages_are_shared_not_copied_and_keep_headers() -> None:
    w = World()
    a, b = w.sub("t"), w.sub("t")
    w.topics.publish("t", [In(b"x", {"k": "v"})], w.now)
    (ma,), (mb,) = a.items, b.items
    assert ma is mb  # one object per message, whatever the fan-out
    assert (ma.topic, ma.body, ma.headers) == ("t", b"x", {"k": "v"})


def test_push_ready_only_when_the_buffer_was_empty() -> None:
    w = World()
    peer = FakePeer(1)
    sub = w.sub("t", peer)
    w.publish("t", "1")
    w.publish("t", "2")
    assert peer.ready == [sub]
    take(sub)
    w.publish("t", "3")
    assert peer.ready == [sub, sub]


def test_new_subscription_is_seen_by_the_next_publish() -> None:
    w = World()
    w.publish("a.b", "before")  # caches the (empty) route for a.b
    sub = w.sub("a.*")
    w.publish("a.b", "after")
    assert take(sub) == ["after"]


# ------------------------------------------------------------------- groups


def test_group_members_share_round_robin() -> None:
    w = World()
    members = [w.sub("jobs.*", group="workers") for _ in range(3)]
    for i in range(7):
        w.publish("jobs.x", str(i))
    assert [take(m) for m in members] == [["0", "3", "6"], ["1", "4"], ["2", "5"]]


def test_batch_to_a_group_is_split_in_order_with_no_gaps() -> None:
    w = World()
    members = [w.sub("jobs.*", group="workers") for _ in range(3)]
    result = w.publish("jobs.x", *[str(i) for i in range(10)])
    assert result == PublishResult(10, 0)  # a group counts once per message
    shares = [take(m) for m in members]
    assert shares == [["0", "3", "6", "9"], ["1", "4", "7"], ["2", "5", "8"]]
    w.publish("jobs.x", "10", "11")  # round robin continues where it stopped
    assert [take(m) for m in members] == [[], ["10"], ["11"]]


def test_each_group_and_each_ungrouped_subscription_gets_one_copy() -> None:
    w = World()
    g1 = [w.sub("t.#", group="g1") for _ in range(2)]
    g2 = [w.sub("t.*", group="g2") for _ in range(2)]
    solo = w.sub("t.x")
    assert w.publish("t.x", "m") == PublishResult(3, 0)
    assert sum(len(take(m)) for m in g1) == 1
    assert sum(len(take(m)) for m in g2) == 1
    assert take(solo) == ["m"]


def test_group_is_named_by_its_name_across_patterns() -> None:
    w = World()
    narrow = w.sub("orders.eu", group="g")
    broad = w.sub("orders.#", group="g")
    # Both patterns match: the group still gets one copy, alternating.
    w.publish("orders.eu", "1", "2")
    assert take(narrow) + take(broad) in (["1", "2"], ["2", "1"])
    assert w.topics.group_count == 1
    # Only the broad member matches: it gets everything.
    w.publish("orders.us", "3", "4")
    assert take(broad) == ["3", "4"]
    assert take(narrow) == []


def test_group_disappears_with_its_last_member() -> None:
    w = World()
    a = w.sub("t", group="g")
    b = w.sub("t", group="g")
    a.cancel(w.now)
    w.publish("t", "1", "2")
    assert take(b) == ["1", "2"]
    b.cancel(w.now)
    assert w.topics.group_count == 0
    assert w.publish("t", "3") == PublishResult(0, 0)


# ------------------------------------------------------------ slow consumers


def test_drop_oldest_keeps_the_newest_and_counts_the_rest() -> None:
    w = World()
    slow = w.sub("t", buffer=3)
    fast = w.sub("t")
    w.publish("t", "1", "2")
    w.publish("t", "3", "4", "5")
    assert take(slow) == ["3", "4", "5"]
    assert slow.take_dropped() == 2
    assert slow.take_dropped() == 0  # reported once
    assert slow.dropped == 2
    assert take(fast) == ["1", "2", "3", "4", "5"]
    assert w.topics.stats.dropped == 2


def test_drop_oldest_with_a_batch_bigger_than_the_buffer() -> None:
    w = World()
    sub = w.sub("t", buffer=2)
    w.publish("t", *"abcde")
    assert take(sub) == ["d", "e"]
    assert sub.take_dropped() == 3


def held(sub: TopicSubscription) -> int:
    """What a subscription's byte count should be: the sizes of what it holds."""
    return sum(m.size for m in sub.items)


def test_drop_oldest_by_bytes() -> None:
    w = World()
    sub = w.sub("t", buffer=1000, buffer_bytes=10_000)
    for i in range(20):
        w.publish("t", str(i % 10) * 1000)
    # Each message counts its 1000 bytes, its topic and 40: nine fit in 10,000.
    assert sub.items[0].size == 1041
    assert len(sub.items) == 9
    assert sub.held_bytes == held(sub) == 9 * 1041
    assert sub.take_dropped() == 11
    assert [body[0] for body in take(sub)] == list("123456789")
    assert sub.held_bytes == sub.connection.held == 0


def test_headers_count_toward_the_bytes() -> None:
    w = World()
    sub = w.sub("t", buffer_bytes=1000)
    w.topics.publish("t", [In(b"x" * 400, {"k": "v" * 500})] * 2, w.now)
    assert len(sub.items) == 1 and sub.take_dropped() == 1


def test_a_message_bigger_than_buffer_bytes_is_kept_alone() -> None:
    w = World()
    sub = w.sub("t", buffer_bytes=100)
    w.publish("t", "small", "x" * 500)
    assert take(sub) == ["x" * 500]
    assert sub.take_dropped() == 1


def test_disconnect_policy_by_bytes() -> None:
    w = World()
    peer = FakePeer(7)
    w.sub("t", peer, buffer_bytes=3000, on_overflow="disconnect")
    w.publish("t", "x" * 1000, "y" * 1000)
    assert peer.kicked == []
    w.publish("t", "z" * 1000)
    (kick,) = peer.kicked
    assert isinstance(kick, SlowConsumer)
    assert "3000 bytes (buffer_bytes)" in kick.message


def test_one_connection_is_bounded_over_all_its_subscriptions() -> None:
    limit = 20_000
    w = World(Limits(max_topic_buffer_bytes_per_connection=limit))
    peer, other = FakePeer(1), FakePeer(2)
    mine = [w.sub(f"t{i}", peer, buffer_bytes=limit) for i in range(3)]
    theirs = w.sub("t0", other, buffer_bytes=limit)
    for _ in range(30):
        for i in range(3):
            w.publish(f"t{i}", "m" * 1000)
    connection = mine[0].connection
    assert all(sub.connection is connection for sub in mine)
    assert connection.held == sum(held(sub) for sub in mine) <= limit
    assert all(sub.items for sub in mine[1:])
    # Another connection has a bound of its own.
    assert theirs.connection is not connection
    assert theirs.held_bytes == held(theirs) == 19 * 1042  # topic "t0"
    for sub in mine:
        sub.cancel(w.now)
    assert connection.held == 0


@pytest.mark.parametrize("value", [0, -1, 20_001, "1", 1.5, True])
def test_buffer_bytes_must_be_in_range(value: Any) -> None:
    w = World(Limits(max_topic_buffer_bytes_per_connection=20_000))
    with pytest.raises(BadRequest, match="buffer_bytes must be an integer from 1 to 20000"):
        w.sub("t", buffer_bytes=value)
    assert w.topics.subscription_count == 0


def test_buffer_bytes_defaults_to_16_mib_or_the_connection_limit() -> None:
    assert World().sub("t").buffer_bytes == DEFAULT_BUFFER_BYTES == 16 * 1024 * 1024
    small = World(Limits(max_topic_buffer_bytes_per_connection=1000))
    assert small.sub("t").buffer_bytes == 1000


def test_disconnect_policy_kicks_the_slow_subscriber_only() -> None:
    w = World()
    peer = FakePeer(7)
    slow = w.sub("t", peer, buffer=2, on_overflow="disconnect")
    fast = w.sub("t")
    w.publish("t", "1", "2")
    assert peer.kicked == []
    w.publish("t", "3")
    assert len(peer.kicked) == 1
    assert isinstance(peer.kicked[0], SlowConsumer)
    assert slow.closed and not slow.items
    assert w.topics.subscription_count == 1
    w.publish("t", "4")
    assert take(fast) == ["1", "2", "3", "4"]
    assert w.topics.stats.slow_consumers_kicked == 1


# ------------------------------------------------------- unsubscribe, disconnect


def test_unsubscribe_stops_delivery_prunes_the_trie_and_is_idempotent() -> None:
    w = World()
    sub = w.sub("a.*.c.#")
    assert w.topics.trie_nodes == 5
    w.publish("a.b.c", "1")
    sub.cancel(w.now)
    assert not sub.items  # buffered messages are discarded
    sub.cancel(w.now)
    assert w.topics.unsubscribe(sub) is False
    assert w.publish("a.b.c", "2") == PublishResult(0, 0)
    assert w.topics.trie_nodes == 1
    assert w.topics.subscription_count == 0


def test_disconnect_removes_every_subscription_of_the_peer() -> None:
    w = World()
    gone, stays = FakePeer(1), FakePeer(2)
    w.sub("a", gone)
    w.sub("b", gone, group="g")
    kept = w.sub("a", stays)
    w.topics.disconnect(gone, w.now)
    assert w.topics.subscription_count == 1
    assert w.publish("a", "x") == PublishResult(1, 0)
    assert take(kept) == ["x"]
    assert w.topics.group_count == 0
    w.topics.disconnect(gone, w.now)  # twice is harmless


def test_destroy_forgets_everything() -> None:
    w = World()
    w.sub("a")
    w.ns.queues.declare("q", QueueOptions(), w.now)
    w.topics.bind("q", "a")
    w.topics.destroy()
    assert w.topics.subscription_count == 0
    assert w.topics.binding_count == 0
    assert w.topics.trie_nodes == 1


# -------------------------------------------------------------- validation


@pytest.mark.parametrize("topic", ["", "a..b", ".a", "a.", "a.*", "a.#", "a b", "x" * 256])
def test_invalid_topics_are_refused(topic: str) -> None:
    w = World()
    sub = w.sub("#")
    with pytest.raises(InvalidName):
        w.publish(topic, "x")
    assert not sub.items
    assert w.topics.stats.published == 0


@pytest.mark.parametrize("pattern", ["", "a..b", "a*", "#b", "a.*x", "a b"])
def test_invalid_patterns_are_refused_and_change_nothing(pattern: str) -> None:
    w = World()
    with pytest.raises(InvalidName):
        w.sub(pattern)
    assert w.topics.subscription_count == 0
    assert w.topics.trie_nodes == 1


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"group": ""}, InvalidName),
        ({"group": "a b"}, InvalidName),
        ({"group": "x*"}, InvalidName),
        ({"buffer": 0}, BadRequest),
        ({"buffer": 10**9}, BadRequest),
        ({"on_overflow": "block"}, BadRequest),
    ],
)
def test_invalid_options_are_refused(options: dict[str, Any], error: type[Exception]) -> None:
    w = World()
    with pytest.raises(error):
        w.sub("a", **options)
    assert w.topics.subscription_count == 0
    assert w.topics.group_count == 0


def test_oversized_body_fails_the_whole_batch() -> None:
    w = World(Limits(max_message_bytes=4))
    sub = w.sub("t")
    with pytest.raises(TooLarge):
        w.publish("t", "ok", "too long")
    assert not sub.items


def test_oversized_batch_is_refused() -> None:
    w = World(Limits(max_batch=2))
    sub = w.sub("t")
    with pytest.raises(BadRequest):
        w.publish("t", "1", "2", "3")
    assert not sub.items


def test_empty_batch_reaches_nobody() -> None:
    w = World()
    sub = w.sub("t")
    assert w.publish("t") == PublishResult(0, 0)
    assert not sub.items


# ----------------------------------------------------------------- bindings


def bodies_in_queue(w: World, name: str) -> list[str]:
    contents = w.ns.queues.get(name).inspect(1000)
    return [m.body.decode() for m in contents.ready]


def test_bound_queue_gets_a_copy() -> None:
    w = World()
    w.ns.queues.declare("audit", QueueOptions(), w.now)
    assert w.topics.bind("audit", "orders.#") is True
    assert w.topics.bind("audit", "orders.#") is False
    sub = w.sub("orders.*")
    assert w.publish("orders.new", "1", "2") == PublishResult(2, 2)
    assert bodies_in_queue(w, "audit") == ["1", "2"]
    assert take(sub) == ["1", "2"]
    assert w.publish("payments.new", "3") == PublishResult(0, 0)
    assert w.topics.stats.enqueued == 2


def test_queue_bound_by_two_matching_patterns_gets_one_copy() -> None:
    w = World()
    w.ns.queues.declare("q", QueueOptions(), w.now)
    w.topics.bind("q", "a.*")
    w.topics.bind("q", "a.#")
    assert w.publish("a.b", "x") == PublishResult(0, 1)
    assert bodies_in_queue(w, "q") == ["x"]
    assert w.topics.bindings("q") == [("q", "a.*"), ("q", "a.#")]


def test_bind_needs_an_existing_queue_and_valid_names() -> None:
    w = World()
    with pytest.raises(NotFound):
        w.topics.bind("missing", "a.#")
    w.ns.queues.declare("q", QueueOptions(), w.now)
    with pytest.raises(InvalidName):
        w.topics.bind("q", "a..b")
    with pytest.raises(InvalidName):
        w.topics.bind("q*", "a")
    assert w.topics.binding_count == 0


def test_unbind() -> None:
    w = World()
    w.ns.queues.declare("q", QueueOptions(), w.now)
    w.topics.bind("q", "a")
    assert w.topics.unbind("q", "b") is False
    assert w.topics.unbind("other", "a") is False
    assert w.topics.unbind("q", "a") is True
    assert w.publish("a", "x") == PublishResult(0, 0)
    assert w.topics.trie_nodes == 1


def test_deleting_a_queue_removes_its_bindings() -> None:
    w = World()
    w.ns.queues.declare("q", QueueOptions(), w.now)
    w.topics.bind("q", "a.#")
    w.ns.queues.delete("q", w.now)
    assert w.topics.binding_count == 0
    w.ns.queues.declare("q", QueueOptions(), w.now)  # a new queue starts unbound
    assert w.publish("a.b", "x") == PublishResult(0, 0)
    assert bodies_in_queue(w, "q") == []


def test_full_bound_queue_refuses_its_copy_without_failing_the_publish() -> None:
    w = World()
    w.ns.queues.declare("small", QueueOptions(max_length=1), w.now)
    w.ns.queues.declare("big", QueueOptions(), w.now)
    w.topics.bind("small", "t")
    w.topics.bind("big", "t")
    sub = w.sub("t")
    assert w.publish("t", "1") == PublishResult(1, 2)
    assert w.publish("t", "2") == PublishResult(1, 1, refused=1)  # the full queue refused its copy
    assert bodies_in_queue(w, "small") == ["1"]
    assert bodies_in_queue(w, "big") == ["1", "2"]
    assert take(sub) == ["1", "2"]


def test_storage_failure_of_a_bound_queue_fails_the_publish_before_subscribers_see_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = World()
    w.ns.queues.declare("q", QueueOptions(), w.now)
    w.topics.bind("q", "t")
    sub = w.sub("t")

    def disk_full(
        messages: object, now: float, ttl: float | None = None, priority: int | None = None
    ) -> int:
        raise StorageFull("no space left on device")

    monkeypatch.setattr(w.ns.queues.get("q"), "put", disk_full)
    with pytest.raises(StorageFull):
        w.publish("t", "x")
    assert not sub.items
    assert w.topics.stats.published == 0
