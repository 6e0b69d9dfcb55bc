"""Ctrl-C on the blocking client's long-poll ``fetch`` withdraws the fetch.

Before, ``mb.fetch(q, wait=30)`` interrupted by Ctrl-C (KeyboardInterrupt)
left its fetch parked on the broker: the next message put was delivered to
that fetch, which nobody read any more, and stayed invisible (in flight,
its delivery count raised) until its visibility timeout, while the same
connection's next ``fetch`` found the queue empty. The async clients
withdraw a cancelled long poll (``fetch.cancel``, docs/queues.md); now the
blocking client does too, and gives back (nacks) deliveries that were
already on their way when it gave up.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import pytest
from client_facades import SAFETY

import minibroker
from minibroker.client.connection import Connection, PostedCall
from minibroker.client.protocol import Call


def _blocked_in_fetch(thread_id: int) -> bool:
    """True if thread ``thread_id`` waits for an answer in the blocking client."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        code = frame.f_code
        if code.co_filename.endswith("sync.py") and code.co_name in ("_read_until", "wait"):
            return True
        frame = frame.f_back
    return False


def _interrupt_when_parked(main: int, watcher: Any, interrupted: threading.Event) -> None:
    """Ctrl-C for thread ``main`` once its fetch is parked on the broker.

    The signal is sent again until it is taken: one that lands just before
    the thread enters ``poll`` is only handled when ``poll`` returns.
    """
    for _ in range(int(SAFETY * 1000)):
        if watcher.queue_stats("jobs").waiting_fetches == 1 and _blocked_in_fetch(main):
            break
        threading.Event().wait(0.001)
    while not interrupted.is_set():
        signal.pthread_kill(main, signal.SIGINT)
        interrupted.wait(0.05)


@pytest.mark.skipif(sys.platform == "win32", reason="pthread_kill")
@pytest.mark.parametrize("reader", ["caller", "reader thread"])
def test_an_interrupted_long_poll_is_withdrawn(minibroker_url: str, reader: str) -> None:
    """Interrupted while it reads its own answer, or while the reader thread
    reads for it (a subscription is open on the connection)."""
    assert threading.current_thread() is threading.main_thread()
    interrupted = threading.Event()

    def interrupt_once(signum: int, frame: Any) -> None:
        if not interrupted.is_set():
            interrupted.set()
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt_once)
    with (
        minibroker.connect_sync(minibroker_url) as mb,
        minibroker.connect_sync(minibroker_url) as other,
    ):
        other.declare_queue("jobs")
        helper = threading.Thread(
            target=_interrupt_when_parked, args=(threading.get_ident(), other, interrupted)
        )
        helper.start()
        try:
            subscription = mb.subscribe("t.#") if reader == "reader thread" else None
            with pytest.raises(KeyboardInterrupt):
                mb.fetch("jobs", wait=SAFETY)
            if subscription is not None:
                subscription.close()
        finally:
            interrupted.set()
            helper.join(SAFETY)
            signal.signal(signal.SIGINT, previous)
        mb.ping()  # the broker has read everything sent before it
        assert other.queue_stats("jobs").waiting_fetches == 0
        other.put("jobs", b"after ctrl-c")
        [delivery] = mb.fetch("jobs")  # not swallowed by the abandoned fetch
        assert (delivery.body, delivery.delivery_count) == (b"after ctrl-c", 1)
        delivery.ack()
        assert not mb._conn.pending  # the withdrawn fetch's answer was read


def test_deliveries_of_a_fetch_given_up_are_given_back() -> None:
    """The fetch's answer crossed the withdrawal: its deliveries are nacked
    (requeued at once), not left in flight until their visibility timeout."""
    from minibroker.client.queues import withdrawable_fetch

    posted: list[Call[Any]] = []
    conn = Connection(post=posted.append)

    class Settler:
        def _post(self, call: Call[Any]) -> None:
            posted.append(call)

    plain = Call("fetch", {"queue": "jobs", "max_messages": 1, "wait": 5.0})
    pending, _ = conn.begin(withdrawable_fetch(plain, Settler(), "jobs"), PostedCall)
    pending._give_up()
    assert [(c.op, c.fields) for c in posted] == [
        ("fetch.cancel", {"queue": "jobs", "fetch": pending.request_id})
    ]
    pending._settle([{"delivery_id": 7, "body": b"x"}], None)
    assert [(c.op, c.fields["deliveries"]) for c in posted[1:]] == [("nack", [7])]
