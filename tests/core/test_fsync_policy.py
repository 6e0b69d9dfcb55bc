"""The broker's one durability object: policy, write generation, held confirmations."""

from __future__ import annotations

import pytest

from minibroker.core.config import FsyncPolicy
from minibroker.core.durability import Confirm, Durability
from minibroker.errors import BrokerError, StorageError, StorageFull


class Disk:
    """A stand-in for ``Broker.sync_storage``: counts syncs, fails when told."""

    def __init__(self) -> None:
        self.syncs = 0
        self.failure: Exception | None = None

    def sync(self) -> None:
        if self.failure is not None:
            raise self.failure
        self.syncs += 1


def durability(policy: FsyncPolicy) -> tuple[Durability, Disk]:
    disk = Disk()
    return Durability(policy, disk.sync), disk


def recorder(outcomes: list[tuple[str, BrokerError | None]], name: str) -> Confirm:
    return lambda error: outcomes.append((name, error))


def test_group_commit_releases_what_the_sync_covered_in_the_order_held() -> None:
    d, disk = durability("batch")
    woken: list[int] = []
    d.on_dirty = lambda: woken.append(d.generation)
    outcomes: list[tuple[str, BrokerError | None]] = []
    since = d.generation
    d.written()
    assert woken == [1] and d.must_hold(since)
    d.hold(recorder(outcomes, "first"))
    d.hold(recorder(outcomes, "second"))  # no write of its own: waits behind the first
    assert outcomes == [] and d.holding
    assert d.sync() is not None
    assert disk.syncs == 1 and d.synced_generation == 1
    assert outcomes == [("first", None), ("second", None)] and not d.holding
    assert d.sync() is None  # nothing written since: no fsync
    assert disk.syncs == 1 and d.fsyncs == 1 and d.fsync_seconds.count == 1


def test_release_stops_at_confirmations_of_later_writes() -> None:
    d, _ = durability("batch")
    outcomes: list[tuple[str, BrokerError | None]] = []
    d.written()
    d.hold(recorder(outcomes, "one"))
    covered = d.generation
    d.written()
    d.hold(recorder(outcomes, "two"))
    d.release(covered)
    assert outcomes == [("one", None)]
    d.release(d.generation)
    assert outcomes == [("one", None), ("two", None)]


@pytest.mark.parametrize(
    ("failure", "kind"), [(OSError(5, "EIO"), StorageError), (StorageFull("full"), StorageFull)]
)
def test_a_failed_sync_fails_every_held_confirmation_and_the_next_one_retries(
    failure: Exception, kind: type[BrokerError]
) -> None:
    d, disk = durability("batch")
    outcomes: list[tuple[str, BrokerError | None]] = []
    d.written()
    d.hold(recorder(outcomes, "one"))
    disk.failure = failure
    assert d.sync() is None
    [(name, error)] = outcomes
    assert name == "one" and isinstance(error, kind) and "could not sync" in error.message
    assert d.fsyncs == 0 and not d.holding
    disk.failure = None
    d.written()
    d.hold(recorder(outcomes, "two"))
    d.sync()
    assert outcomes[-1] == ("two", None) and disk.syncs == 1


def test_always_syncs_inside_the_write_and_holds_nothing() -> None:
    d, disk = durability("always")
    since = d.generation
    d.written()
    assert disk.syncs == 1 and not d.must_hold(since) and d.generation == since
    disk.failure = OSError(28, "ENOSPC")
    with pytest.raises(OSError):
        d.written()  # the request that wrote hears of it


def test_never_syncs_nothing_and_holds_nothing() -> None:
    d, disk = durability("never")
    since = d.generation
    d.written()
    assert not d.must_hold(since) and not d.on_disk and disk.syncs == 0
