"""The blocking ``serve``'s workers read the socket themselves (leader/followers).

A worker that reads a request runs its handler itself, and while the last
handlers were quick it keeps the reading role for the next one: nobody
reads the socket while that handler runs (docs/internals.md, "Latency").
These tests pin what must hold anyway: a slow handler never holds up the
other requests, the other subscriptions or the handler's own calls on the
same client, and a responder that goes away mid-request still gives its
requester a clear error at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

import minibroker
from minibroker.client.rpc import Reply, ServeHandle, SyncIncomingRequest
from minibroker.client.sync import Client as BlockingClient
from minibroker.errors import ResponderGone

WAIT = 30.0


@contextmanager
def serving(
    client: BlockingClient, subject: str, handler: Any, workers: int
) -> Iterator[ServeHandle]:
    handle = ServeHandle()
    thread = threading.Thread(
        target=client.serve,
        args=(subject, handler),
        kwargs={"workers": workers, "handle": handle},
        daemon=True,
    )
    thread.start()
    assert handle.ready.wait(WAIT)
    try:
        yield handle
    finally:
        handle.stop()
        thread.join(WAIT)
        assert not thread.is_alive(), "stop() ends serve"


def _slow_then_quick(release: threading.Event, slow_started: threading.Event) -> Any:
    def handler(req: SyncIncomingRequest) -> bytes:
        if req.body == b"slow":
            slow_started.set()
            assert release.wait(WAIT)
        return b"re:" + req.body

    return handler


@pytest.mark.parametrize("warm_up", [0, 20])
def test_a_slow_handler_does_not_hold_up_the_next_request(
    minibroker_url: str, warm_up: int
) -> None:
    # The first handlers are quick, so the worker that reads the slow request
    # keeps the reading role while its handler runs; the request after it
    # must still be read (by the watching worker) and answered meanwhile.
    release = threading.Event()
    slow_started = threading.Event()
    handler = _slow_then_quick(release, slow_started)
    with (
        minibroker.connect_sync(minibroker_url) as responder_client,
        serving(responder_client, "svc.lend", handler, workers=3),
        minibroker.connect_sync(minibroker_url) as mb,
        ThreadPoolExecutor(1) as pool,
    ):
        for i in range(warm_up):
            assert mb.request("svc.lend", b"%d" % i, timeout=WAIT).body == b"re:%d" % i
        slow = pool.submit(mb.request, "svc.lend", b"slow", None, WAIT)
        assert slow_started.wait(WAIT)
        try:
            assert mb.request("svc.lend", b"next", timeout=WAIT).body == b"re:next"
        finally:
            release.set()
        assert slow.result(WAIT).body == b"re:slow"


def test_other_subscriptions_are_read_while_a_handler_runs(minibroker_url: str) -> None:
    # A topic subscription on the responder's own client keeps receiving
    # while a serve worker that kept the reading role runs a slow handler.
    release = threading.Event()
    slow_started = threading.Event()
    handler = _slow_then_quick(release, slow_started)
    with (
        minibroker.connect_sync(minibroker_url) as responder_client,
        responder_client.subscribe("news.#") as news,
        serving(responder_client, "svc.mixed", handler, workers=2),
        minibroker.connect_sync(minibroker_url) as mb,
        ThreadPoolExecutor(1) as pool,
    ):
        assert mb.request("svc.mixed", b"quick", timeout=WAIT).body == b"re:quick"
        slow = pool.submit(mb.request, "svc.mixed", b"slow", None, WAIT)
        assert slow_started.wait(WAIT)
        try:
            mb.publish("news.today", b"extra")
            assert news.get(timeout=WAIT).body == b"extra"
        finally:
            release.set()
        assert slow.result(WAIT).body == b"re:slow"


def test_a_handler_may_call_its_own_client_while_keeping_the_role(minibroker_url: str) -> None:
    # With an idle worker to watch, a quick handler keeps the reading role;
    # a call it makes on the same client must still get its answer.
    def handler(req: SyncIncomingRequest) -> Reply:
        return Reply(responder_client.ping(req.body))

    with (
        minibroker.connect_sync(minibroker_url) as responder_client,
        serving(responder_client, "svc.self", handler, workers=4),
        minibroker.connect_sync(minibroker_url) as mb,
    ):
        for i in range(30):
            assert mb.request("svc.self", b"%d" % i, timeout=WAIT).body == b"%d" % i


def test_answers_keep_their_requests_under_concurrency(minibroker_url: str) -> None:
    # Many requests in flight, workers taking turns reading: every requester
    # gets the answer to its own request, each exactly once.
    with (
        minibroker.connect_sync(minibroker_url) as responder_client,
        serving(responder_client, "svc.many", lambda req: b"re:" + req.body, workers=8),
        minibroker.connect_sync(minibroker_url) as mb,
        ThreadPoolExecutor(16) as pool,
    ):
        bodies = [b"%d" % i for i in range(400)]
        replies = list(pool.map(lambda b: mb.request("svc.many", b, timeout=WAIT).body, bodies))
        assert replies == [b"re:" + b for b in bodies]


def test_responder_closed_mid_request_fails_the_request_at_once(minibroker_url: str) -> None:
    # The worker running the handler kept (lent) the reading role when its
    # client is closed: the requester must hear responder_gone at once, not
    # at its deadline, and serve must end with the connection's error.
    started = threading.Event()
    release = threading.Event()

    def handler(req: SyncIncomingRequest) -> bytes:
        if req.body == b"hold":
            started.set()
            release.wait(WAIT)
        return req.body

    responder_client = minibroker.connect_sync(minibroker_url)
    handle = ServeHandle()
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            responder_client.serve("svc.gone", handler, workers=3, handle=handle)
        except minibroker.BrokerError as exc:  # the connection is closed under it
            failures.append(exc)

    served = threading.Thread(target=serve, daemon=True)
    served.start()
    try:
        assert handle.ready.wait(WAIT)
        with minibroker.connect_sync(minibroker_url) as mb, ThreadPoolExecutor(1) as pool:
            assert mb.request("svc.gone", b"quick", timeout=WAIT).body == b"quick"
            pending = pool.submit(mb.request, "svc.gone", b"hold", None, 600.0)
            assert started.wait(WAIT)
            responder_client.close()
            with pytest.raises(ResponderGone):
                pending.result(WAIT)
    finally:
        release.set()
        responder_client.close()
        served.join(WAIT)
    assert not served.is_alive()
