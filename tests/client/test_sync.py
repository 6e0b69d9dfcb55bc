"""The blocking client (``minibroker.connect_sync``): what is specific to it.

Client-level behaviour shared with the other clients (ping, errors,
pipelining, auth, shutdown, pushes, TLS) is tested in test_clients_common.py.
Threads here are joined with a timeout only as a safety net.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fake_broker import FakeBroker, items_parser, script

import minibroker
from minibroker.client.protocol import Call
from minibroker.client.pushes import SubscriptionEnded
from minibroker.client.rpc import SyncIncomingRequest
from minibroker.client.sync import CallTimeout, server_wait
from minibroker.errors import BadFrame, ConnectionClosed, Timeout, Unauthorized, UnknownOp
from minibroker.testing import ThreadedBroker, run_in_thread

SAFETY = 30.0


def start(target: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    """Run ``target`` in a thread; its result or exception lands in the list."""
    outcome: list[Any] = []

    def main() -> None:
        try:
            outcome.append(target(*args))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    return thread, outcome


def finish(thread: threading.Thread, outcome: list[Any]) -> Any:
    thread.join(SAFETY)
    assert not thread.is_alive(), "the call hung"
    return outcome[0]


def test_many_threads_share_one_client(minibroker_url: str) -> None:
    with minibroker.connect_sync(minibroker_url) as mb:

        def worker(n: int) -> list[bytes | None]:
            return [mb.ping(b"%d-%d" % (n, i)) for i in range(200)]

        workers = [start(worker, n) for n in range(16)]
        for n, (thread, outcome) in enumerate(workers):
            assert finish(thread, outcome) == [b"%d-%d" % (n, i) for i in range(200)]
        assert not mb._conn.pending


def test_call_many_pipelines_from_one_thread(minibroker_url: str) -> None:
    with minibroker.connect_sync(minibroker_url) as mb:
        payloads = [b"%d" % i for i in range(500)]
        assert mb._call_many([Call("ping", {"data": p}) for p in payloads]) == payloads
        calls = [Call("ping", {"data": b"a"}), Call("nope", {}), Call("ping", {"data": b"b"})]
        with pytest.raises(UnknownOp):
            mb._call_many(calls)
        assert not mb._conn.pending
        assert mb.ping(b"after") == b"after"


def test_token_and_namespace_from_the_url() -> None:
    with run_in_thread(tokens={"s3cret": "alice"}) as server:
        url = f"minibroker://s3cret@127.0.0.1:{server.port}?namespace=from-url"
        with minibroker.connect_sync(url) as mb:
            assert mb.server_info["namespace"] == "from-url"
        with pytest.raises(Unauthorized):
            minibroker.connect_sync(url, token="nope")


def test_close_is_idempotent_and_later_calls_fail(minibroker_url: str) -> None:
    mb = minibroker.connect_sync(minibroker_url)
    assert mb.ping(b"x") == b"x"
    mb.close()
    mb.close()
    assert mb.closed
    with pytest.raises(ConnectionClosed):
        mb.ping()


def test_a_call_times_out_and_the_connection_stays_usable(fake_broker: FakeBroker) -> None:
    with minibroker.connect_sync(fake_broker.url, timeout=5) as mb:
        with pytest.raises(CallTimeout) as info:
            mb._call(Call("hold", {}), timeout=0.05)
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, Timeout)
        assert not mb._conn.pending
        # The late answer is discarded; the next call gets its own answer.
        request_id = fake_broker.received("hold")[0]["id"]
        fake_broker.send({"op": "ok", "id": request_id, "result": "late"})
        assert mb.ping(b"mine") == b"mine"
        with pytest.raises(CallTimeout):
            mb.with_timeout(0.05)._call(Call("hold", {}))
        assert mb.with_timeout(None).ping(b"view") == b"view"


def test_server_side_waits_extend_the_call_timeout() -> None:
    assert server_wait(Call("fetch", {"queue": "q", "wait": 2.5})) == 2.5
    assert server_wait(Call("request", {"subject": "s", "timeout": 1})) == 1.0
    assert server_wait(Call("ping", {})) == 0.0
    assert server_wait(Call("x", {"wait": True, "timeout": "soon"})) == 0.0


def test_a_lost_connection_fails_a_call_without_timeout_at_once(
    fake_broker: FakeBroker,
) -> None:
    with minibroker.connect_sync(fake_broker.url, timeout=None) as mb:
        calls = [start(mb._call, Call("hold", {})) for _ in range(8)]
        fake_broker.wait_for("hold", 8)
        fake_broker.drop()
        for thread, outcome in calls:
            assert isinstance(finish(thread, outcome), ConnectionClosed)


def test_closing_from_another_thread_fails_pending_calls(fake_broker: FakeBroker) -> None:
    mb = minibroker.connect_sync(fake_broker.url, timeout=None)
    thread, outcome = start(mb._call, Call("hold", {}))
    fake_broker.wait_for("hold")
    mb.close()
    error = finish(thread, outcome)
    assert isinstance(error, ConnectionClosed)
    assert "closed" in str(error)


def test_subscription_get_iterate_batch_and_end(fake_broker: FakeBroker) -> None:
    pushes = [
        {"op": "msg", "sub": 1, "items": list(range(6))},
        {"op": "end", "sub": 1, "code": "not_found", "message": "gone"},
    ]
    call = Call("script", script({"sub": 1}, pushes))
    with (
        minibroker.connect_sync(fake_broker.url) as mb,
        mb._subscription(call, items_parser) as sub,
    ):
        assert sub.get(SAFETY) == 0
        assert sub.get_batch(2, SAFETY) == [1, 2]
        assert list(sub) == [3, 4, 5]  # iteration stops at the broker's end
        assert isinstance(sub.ended, SubscriptionEnded)
        with pytest.raises(SubscriptionEnded):
            sub.get(0)
        assert sub.get_nowait() is None


def test_subscription_get_times_out_and_close_ends_iteration(fake_broker: FakeBroker) -> None:
    with minibroker.connect_sync(fake_broker.url) as mb:
        with mb._subscription(Call("script", script({"sub": 2})), items_parser) as sub:
            with pytest.raises(TimeoutError):
                sub.get(timeout=0)
            thread, outcome = start(list, sub)  # blocks iterating
            sub.close()
            assert finish(thread, outcome) == []
        unsubscribes = fake_broker.wait_for("unsubscribe")
        assert [u["sub"] for u in unsubscribes] == [2]


def test_callback_subscriptions_run_on_the_reader_thread(fake_broker: FakeBroker) -> None:
    seen: list[tuple[Any, str]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def callback(item: Any) -> None:
        seen.append((item, threading.current_thread().name))
        if item == "call":
            try:
                mb.ping()
            except RuntimeError as exc:
                errors.append(exc)
        if item == "last":
            done.set()

    pushes = [{"op": "msg", "sub": 3, "items": ["a", "call", "b"]}]
    with minibroker.connect_sync(fake_broker.url) as mb:
        call = Call("script", script({"sub": 3}, pushes))
        with mb._subscription(call, items_parser, callback=callback) as sub:
            fake_broker.send({"op": "msg", "sub": 3, "items": ["last"]})
            assert done.wait(SAFETY)
            assert sub.get_nowait() is None  # nothing is buffered in callback mode
        assert [item for item, _ in seen] == ["a", "call", "b", "last"]
        assert {name for _, name in seen} == {"minibroker-client-reader"}
        assert len(errors) == 1 and "reader thread" in str(errors[0])
        assert mb.ping(b"fine") == b"fine"


def test_a_full_tail_buffer_pauses_its_subscription_not_the_reader(
    fake_broker: FakeBroker,
) -> None:
    """Issue 14: a full buffer without an overflow policy (a tail, a responder)
    used to stop the reader, and with it the answers to this client's calls."""
    pushes = [{"op": "msg", "sub": 1, "items": list(range(i, i + 5))} for i in (0, 5, 10)]
    call = Call("script", script({"sub": 1}, pushes))
    with (
        minibroker.connect_sync(fake_broker.url, max_pending=10) as mb,
        mb._subscription(call, items_parser) as sub,
    ):
        assert [f["sub"] for f in fake_broker.wait_for("pause")] == [1]
        assert mb.ping(b"behind the pushes") == b"behind the pushes"
        assert sub.get_batch(9, SAFETY) == list(range(9))
        assert fake_broker.received("resume") == []
        assert sub.get(SAFETY) == 9  # 5 left: at half, it resumes
        assert [f["sub"] for f in fake_broker.wait_for("resume")] == [1]
        assert sub.get_batch(100, SAFETY) == list(range(10, 15))
        assert len(fake_broker.received("pause")) == 1


def test_a_subscribe_that_timed_out_is_undone_when_its_reply_comes(
    fake_broker: FakeBroker,
) -> None:
    with minibroker.connect_sync(fake_broker.url) as mb:
        subscription = mb._subscription(Call("hold-sub", {}), items_parser)
        with pytest.raises(CallTimeout):
            subscription._start(timeout=0.05)
        request_id = fake_broker.received("hold-sub")[0]["id"]
        fake_broker.send({"op": "ok", "id": request_id, "result": {"sub": 9}})
        assert fake_broker.wait_for("unsubscribe")[0]["sub"] == 9
        assert not mb._conn.subscriptions


def test_undecodable_bytes_from_the_server_fail_the_connection(fake_broker: FakeBroker) -> None:
    with minibroker.connect_sync(fake_broker.url, timeout=None) as mb:
        thread, outcome = start(mb._call, Call("hold", {}))
        fake_broker.wait_for("hold")
        fake_broker.send_raw(b"\x00\x00\x00\x02\xc1\xc1")
        error = finish(thread, outcome)
        assert isinstance(error, ConnectionClosed) and "msgpack" in str(error)
        assert isinstance(mb._conn.closed, BadFrame)


# --- a caller reading its own answer (no reader-thread hop) ---------------------


def _dispatching_threads(mb: Any) -> list[str]:
    """Record the name of each thread that dispatches a chunk the socket delivered."""
    names: list[str] = []
    receive = mb._conn.receive_data

    def recording(data: bytes) -> None:
        names.append(threading.current_thread().name)
        receive(data)

    mb._conn.receive_data = recording
    return names


def _hold_id(fake_broker: FakeBroker, index: int = 0) -> int:
    return int(fake_broker.wait_for("hold", index + 1)[index]["id"])


def test_a_lone_call_reads_its_own_answer_on_the_calling_thread(fake_broker: FakeBroker) -> None:
    with minibroker.connect_sync(fake_broker.url) as mb:
        names = _dispatching_threads(mb)
        assert mb.ping(b"a") == b"a"
        assert mb.ping(b"b") == b"b"
        assert names == [threading.current_thread().name] * 2


def test_calls_meeting_a_direct_reader_are_answered_and_it_hands_over(
    fake_broker: FakeBroker,
) -> None:
    with minibroker.connect_sync(fake_broker.url, timeout=None) as mb:
        first = start(mb._call, Call("hold", {}))
        first_id = _hold_id(fake_broker)
        assert mb._reading is first[0]  # the first caller reads for everyone now
        assert mb.ping(b"meanwhile") == b"meanwhile"
        second = start(mb._call, Call("hold", {}))
        second_id = _hold_id(fake_broker, 1)
        fake_broker.send({"op": "ok", "id": first_id, "result": 1})
        assert finish(*first) == 1
        # The first caller is gone: the reader thread must read the second answer.
        fake_broker.send({"op": "ok", "id": second_id, "result": 2})
        assert finish(*second) == 2


def test_pushes_arriving_during_a_direct_read_reach_their_subscription(
    fake_broker: FakeBroker,
) -> None:
    with minibroker.connect_sync(fake_broker.url, timeout=None) as mb:
        first = start(mb._call, Call("hold", {}))
        first_id = _hold_id(fake_broker)
        pushes = [{"op": "msg", "sub": 4, "items": ["a", "b"]}]
        with mb._subscription(Call("script", script({"sub": 4}, pushes)), items_parser) as sub:
            assert sub.get(SAFETY) == "a"  # dispatched by the first caller's read
            fake_broker.send({"op": "ok", "id": first_id, "result": None})
            assert finish(*first) is None
            # The subscription outlives that caller: the reader thread reads on.
            fake_broker.send({"op": "msg", "sub": 4, "items": ["c"]})
            assert [sub.get(SAFETY), sub.get(SAFETY)] == ["b", "c"]


def test_a_callback_run_by_a_direct_reader_may_not_block_either(fake_broker: FakeBroker) -> None:
    errors: list[BaseException] = []

    def callback(item: Any) -> None:
        try:
            mb.ping()
        except RuntimeError as exc:
            errors.append(exc)

    with minibroker.connect_sync(fake_broker.url, timeout=5) as mb:
        first = start(mb._call, Call("hold", {}))
        first_id = _hold_id(fake_broker)
        pushes = [{"op": "msg", "sub": 5, "items": ["x"]}]
        call = Call("script", script({"sub": 5}, pushes))
        with mb._subscription(call, items_parser, callback=callback):
            fake_broker.send({"op": "ok", "id": first_id, "result": None})
            assert finish(*first) is None
        assert len(errors) == 1 and "reader thread" in str(errors[0])


def test_a_lost_connection_ends_a_direct_read_at_once(fake_broker: FakeBroker) -> None:
    with minibroker.connect_sync(fake_broker.url, timeout=SAFETY * 2) as mb:
        thread, outcome = start(mb._call, Call("hold", {}))
        _hold_id(fake_broker)
        assert mb._reading is thread
        fake_broker.drop()
        assert isinstance(finish(thread, outcome), ConnectionClosed)


def test_ctrl_c_during_a_direct_read_gives_the_reading_role_back(fake_broker: FakeBroker) -> None:
    with minibroker.connect_sync(fake_broker.url, timeout=5) as mb:
        mb._sock = _InterruptedSocket(mb._sock, "recv")  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            mb.ping(b"interrupted")
        # Nothing was lost and the role was handed on: the reader thread reads
        # the interrupted call's answer, and later calls get theirs.
        assert mb.ping(b"after") == b"after"
        assert mb.ping(b"again") == b"again"
        assert not mb.closed


def test_answers_to_posted_calls_are_read_while_nothing_else_waits(
    fake_broker: FakeBroker,
) -> None:
    with minibroker.connect_sync(fake_broker.url) as mb:
        mb._post(Call("hold", {}))
        request_id = _hold_id(fake_broker)
        # Unread answers would pile up in the socket: the reader thread reads them.
        assert mb._reading is mb._reader
        assert list(mb._conn.pending) == [request_id]
        fake_broker.send({"op": "ok", "id": request_id, "result": None})
        assert mb.ping(b"after") == b"after"  # answered after the posted call's answer
        assert not mb._conn.pending


def test_the_shared_server_fixture_serves_blocking_code(
    minibroker_server: ThreadedBroker, minibroker_url: str
) -> None:
    with minibroker.connect_sync(minibroker_url) as mb:
        assert mb.server_info["namespace"] in minibroker_url
        assert mb.ping(b"fixture") == b"fixture"


class _InterruptedSocket:
    """A socket interrupted (Ctrl-C) once, in its next ``sendall`` after sending
    half the data, or in its next ``recv`` before reading anything."""

    def __init__(self, sock: Any, method: str = "sendall") -> None:
        self._sock = sock
        self._method = method
        self.interrupted = False

    def _interrupt_now(self, method: str) -> bool:
        if self.interrupted or method != self._method:
            return False
        self.interrupted = True
        return True

    def sendall(self, data: bytes) -> None:
        if self._interrupt_now("sendall"):
            self._sock.sendall(data[: len(data) // 2])
            raise KeyboardInterrupt
        self._sock.sendall(data)

    def recv(self, size: int) -> bytes:
        if self._interrupt_now("recv"):
            raise KeyboardInterrupt
        data: bytes = self._sock.recv(size)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_a_send_interrupted_by_ctrl_c_ends_the_connection_instead_of_hanging(
    minibroker_url: str,
) -> None:
    """Ctrl-C in the middle of a send leaves half a frame on the wire: the
    interrupt reaches the caller, and every later call on the client fails at
    once with ConnectionClosed rather than waiting for answers that cannot come."""
    mb = minibroker.connect_sync(minibroker_url, timeout=30)
    try:
        mb._sock = _InterruptedSocket(mb._sock)  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            mb.ping(b"x" * 1000)
        with pytest.raises(ConnectionClosed, match="interrupted"):
            mb.ping(b"after")
    finally:
        mb.close()


def test_a_subscription_not_entered_refuses_to_wait(minibroker_url: str) -> None:
    # Without its ``with`` block nothing subscribed: waiting would never end.
    with minibroker.connect_sync(minibroker_url) as mb:
        sub = mb.subscribe("never.entered")
        with pytest.raises(RuntimeError, match="enter the subscription first"):
            sub.get(timeout=5)
        with sub:  # entering subscribes, once, and the same object iterates
            mb.publish("never.entered", b"now")
            assert sub.get(timeout=5).body == b"now"


def test_a_responders_replies_are_quiet_and_leave_nothing_pending(
    fake_broker: FakeBroker,
) -> None:
    # reply() without confirm asks the broker for no answer: nothing to read, nothing pending.
    with minibroker.connect_sync(fake_broker.url) as mb:
        SyncIncomingRequest(7, "svc", b"q", None, 5.0, mb).reply(b"a")
        (sent,) = fake_broker.wait_for("reply")
        assert sent["rid"] == 7 and sent["confirm"] is False
        assert not mb._conn.pending
