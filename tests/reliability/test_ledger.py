"""The crash campaign's ledger classifies correctly (a checker that cannot fail proves nothing)."""

from __future__ import annotations

import random

from benchmarks.crash_campaign import IdLedger, LogLedger, Report


def test_queue_ledger_classification() -> None:
    ledger = IdLedger("q")
    rng = random.Random(1)
    ids = ledger.new_ids(6)
    bodies = [ledger.body(i, rng) for i in ids]
    ledger.confirm(range(0, 5))  # 5 was sent, never confirmed
    for i in (0, 1, 1, 2, 5):  # 1 twice; 3 and 4 never seen; 5 seen though unconfirmed
        ledger.observe(bodies[i])
    ledger.ack([0])
    ledger.observe(bodies[0])  # an acked message came back
    ledger.observe(b"q|99|")  # never sent
    ledger.observe(b"q|2|garbled")
    ledger.observe(b"other|1|")
    assert ledger.classify() == {
        "sent": 6,
        "confirmed": 5,
        "delivered": 3,
        "lost": 2,
        "unexpected": 3,
        "duplicated": 2,
        "acks_undone": 1,
        "batches_whole": 0,
        "batches_absent": 0,
        "batches_partial": 1,  # 3 and 4 of the one batch never seen: torn
    }


def test_batches_are_whole_absent_or_partial() -> None:
    ledger = IdLedger("q")
    rng = random.Random(3)
    batches = [ledger.new_ids(n) for n in (3, 4, 2, 5)]
    seen = [*batches[0], *batches[2], *batches[3][:2]]  # batch 1 absent, batch 3 torn
    for i in seen:
        ledger.observe(ledger.body(i, rng))
    result = ledger.classify()
    assert (result["batches_whole"], result["batches_absent"], result["batches_partial"]) == (
        2,
        1,
        1,
    )
    assert ledger.partial_samples == ["ids 9..13: 3 missing"]


def test_log_ledger_classification() -> None:
    ledger = LogLedger()
    rng = random.Random(2)
    ids = ledger.ids.new_ids(5)
    bodies = [ledger.ids.body(i, rng) for i in ids]
    ledger.confirm(0, range(0, 3))
    ledger.confirm(3, range(3, 5))
    # Offset 2 holds the wrong record, 4 is missing, an id appears twice, junk at the end.
    records = [(0, bodies[0]), (1, bodies[1]), (2, bodies[3]), (3, bodies[3]), (5, b"junk")]
    result = ledger.check_all(records)
    assert result["confirmed"] == 5
    assert result["delivered"] == 3  # 0, 1 and 3 are where they were confirmed
    assert result["lost"] == 2
    assert result["duplicated"] == 1
    assert result["unexpected"] == 1
    assert result["offset_gaps"] == 1
    # One batch of five: ids 2 and 4 never found in the log, so it is torn.
    assert (result["batches_whole"], result["batches_partial"]) == (0, 1)


def test_log_batches_torn_by_a_crash_are_found() -> None:
    ledger = LogLedger()
    rng = random.Random(4)
    whole = ledger.ids.new_ids(3)
    torn = ledger.ids.new_ids(4)  # never confirmed; only its first two records survived
    ledger.ids.new_ids(2)  # a batch never confirmed and lost whole: fine
    ledger.confirm(0, whole)
    records = [(i, ledger.ids.body(i, rng)) for i in [*whole, *torn[:2]]]
    result = ledger.check_all(records)
    assert result["lost"] == 0
    assert (result["batches_whole"], result["batches_absent"], result["batches_partial"]) == (
        1,
        1,
        1,
    )
    assert not Report(log=result).ok


def test_report_fails_on_any_violation() -> None:
    clean = {"lost": 0, "unexpected": 0, "duplicated": 7}
    assert Report(queue=clean, topic=clean, log=clean).ok
    assert not Report(queue={**clean, "lost": 1}).ok
    assert not Report(log={**clean, "commits_lost": 1}).ok
    assert not Report(unrouted=1).ok
    assert not Report(topic={**clean, "batches_partial": 1}).ok
    assert not Report(requests={"sent": 3, "answered": 3, "wrong_replies": 1}).ok
    assert not Report(errors=["producer: StorageError: ..."]).ok
