"""Event sourcing with a minibroker log: rebuild account balances by replay, then follow live.

Run it with ``python docs/examples/event_sourcing.py`` (no server needed: the
broker is embedded in this process, on memory storage).

The log ``accounts`` holds every deposit and withdrawal as an event, keyed by
account. The balances are never stored; they are *derived*:

1. a projector replays the log from the beginning and folds each event into
   a dict of balances (reading in pages with ``read``);
2. it then follows the log live with ``tail``, starting exactly where the
   replay stopped, so no event is missed or applied twice;
3. a second projector in the consumer group ``statements`` stops half way,
   and a restarted one resumes from the group's committed offset.
"""

from __future__ import annotations

import json
from typing import Any

import trio

import minibroker
from minibroker.storage import Record

LOG = "accounts"

HISTORY = [
    ("alice", "deposit", 100),
    ("bob", "deposit", 50),
    ("alice", "withdraw", 30),
    ("carol", "deposit", 20),
    ("bob", "withdraw", 25),
    ("alice", "deposit", 5),
]
LIVE = [
    ("carol", "deposit", 80),
    ("bob", "deposit", 10),
    ("alice", "withdraw", 75),
]


def event(account: str, kind: str, amount: int) -> dict[str, Any]:
    """One event as a record for ``append_many``: the account is the key."""
    return {"key": account.encode(), "body": json.dumps({"type": kind, "amount": amount}).encode()}


def apply(balances: dict[str, int], record: Record) -> None:
    """Fold one event into the balances (the whole 'business logic')."""
    assert record.key is not None
    account = record.key.decode()
    change = json.loads(record.body)
    sign = 1 if change["type"] == "deposit" else -1
    balances[account] = balances.get(account, 0) + sign * change["amount"]


def show(balances: dict[str, int]) -> str:
    return " ".join(f"{name}={amount}" for name, amount in sorted(balances.items()))


async def rebuild(mb: minibroker.Client) -> tuple[dict[str, int], int]:
    """Replay the whole log in pages; return the balances and the next offset."""
    balances: dict[str, int] = {}
    position = 0
    while True:
        page = await mb.read(LOG, start=position, max_records=4)
        if not page:
            return balances, position
        for record in page:
            apply(balances, record)
        position = page[-1].offset + 1


async def main() -> None:
    async with minibroker.open_broker() as broker, broker.connect() as mb:
        await mb.create_log(LOG)
        await mb.append_many(LOG, [event(*e) for e in HISTORY])

        balances, position = await rebuild(mb)
        print(f"replayed {position} events: {show(balances)}")

        # Follow live from where the replay stopped: no gap, no double count.
        async with mb.tail(LOG, start=position) as tail, trio.open_nursery() as nursery:

            async def teller() -> None:
                for e in LIVE:
                    await mb.append(LOG, **event(*e))

            nursery.start_soon(teller)
            async for record in tail:
                apply(balances, record)
                print(f"live event {record.offset}: {show(balances)}")
                if record.offset == len(HISTORY) + len(LIVE) - 1:
                    break

        # A consumer group: the projector commits as it goes, and a restarted
        # one resumes where the last one stopped.
        statements: dict[str, int] = {}
        async with mb.tail(LOG, group="statements") as tail:
            async for record in tail:
                apply(statements, record)
                if record.offset == 4:
                    break  # "crash" after five events (leaving the block commits them)
        print(f"statements projector stopped at offset {await mb.committed(LOG, 'statements')}")
        async with mb.tail(LOG, group="statements") as tail:
            async for record in tail:
                apply(statements, record)
                if record.offset == len(HISTORY) + len(LIVE) - 1:
                    break
        print(f"statements projector resumed and caught up: {show(statements)}")
        assert statements == balances
        print(f"final balances: {show(balances)}")


if __name__ == "__main__":
    trio.run(main)
