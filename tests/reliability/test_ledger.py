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
    }


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


def test_report_fails_on_any_violation() -> None:
    clean = {"lost": 0, "unexpected": 0, "duplicated": 7}
    assert Report(queue=clean, topic=clean, log=clean).ok
    assert not Report(queue={**clean, "lost": 1}).ok
    assert not Report(log={**clean, "commits_lost": 1}).ok
    assert not Report(unrouted=1).ok
    assert not Report(errors=["producer: StorageError: ..."]).ok
