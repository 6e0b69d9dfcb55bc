"""The x-death header (minibroker.amqp.deaths): RabbitMQ's counting, and the path read from it."""

from __future__ import annotations

from datetime import UTC, datetime

from minibroker.amqp.deaths import record_death, x_death_path

T0 = 1_700_000_000_000  # epoch milliseconds


def test_a_first_death_is_one_entry_with_rabbitmqs_fields() -> None:
    [entry] = record_death(None, "q", "expired", "ex", ["rk"], T0 + 999, "5000")
    assert entry == {
        "count": 1,
        "reason": "expired",
        "queue": "q",
        "time": datetime.fromtimestamp(T0 // 1000, UTC),
        "exchange": "ex",
        "routing-keys": ["rk"],
        "original-expiration": "5000",
    }


def test_a_repeated_death_counts_up_its_entry_and_moves_it_to_the_front() -> None:
    deaths = record_death(None, "work", "rejected", "", ["work"], T0, None)
    deaths = record_death(deaths, "retry", "expired", "", ["retry"], T0 + 5000, None)
    deaths = record_death(deaths, "work", "rejected", "other", ["k"], T0 + 9000, None)
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [  # type: ignore[index]
        ("work", "rejected", 2),
        ("retry", "expired", 1),
    ]
    first = deaths[0]
    assert isinstance(first, dict)
    # The first death's time, exchange and keys stay (RabbitMQ keeps them too).
    assert (first["time"], first["exchange"], first["routing-keys"]) == (
        datetime.fromtimestamp(T0 // 1000, UTC),
        "",
        ["work"],
    )


def test_the_same_queue_for_another_reason_is_another_entry() -> None:
    deaths = record_death(None, "q", "expired", "", ["q"], T0, None)
    deaths = record_death(deaths, "q", "maxlen", "", ["q"], T0, None)
    assert [(d["reason"], d["count"]) for d in deaths] == [  # type: ignore[index]
        ("maxlen", 1),
        ("expired", 1),
    ]


def test_a_clients_garbage_is_kept_behind_the_new_entry() -> None:
    assert record_death("nonsense", "q", "expired", "", ["q"], T0, None)[0]["count"] == 1  # type: ignore[index]
    deaths = record_death(
        [7, {"queue": "q", "reason": "expired", "count": "x"}], "q", "expired", "", ["q"], T0, None
    )
    assert deaths[0] == {"queue": "q", "reason": "expired", "count": 1}
    assert deaths[1:] == [7]


def test_the_path_is_read_back_to_the_last_rejection_oldest_first() -> None:
    deaths = [
        {"queue": "c", "reason": "expired"},
        {"queue": "b", "reason": "maxlen"},
        {"queue": "a", "reason": "rejected"},
        {"queue": "z", "reason": "expired"},
    ]
    assert x_death_path(deaths) == ["b", "c"]
    assert x_death_path(deaths[2:]) == []
    assert x_death_path(None) == []


def test_an_entry_that_is_not_a_table_ends_the_path_as_in_rabbitmq() -> None:
    assert x_death_path([{"queue": "b", "reason": "expired"}, "junk", {"queue": "a"}]) == ["b"]
    # A table without a usable queue is stepped over.
    assert x_death_path([{"queue": "has space"}, {"reason": "expired"}, {"queue": "a"}]) == ["a"]
