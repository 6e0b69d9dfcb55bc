"""The broker's sans-I/O share of one request/reply: two ``Session``s, no sockets, no Trio.

    .venv/bin/python -m benchmarks.rpc_session_micro [--count 20000]

A requester session and a responder session share one in-process
``Broker``. Per round: a ``request`` frame into the requester's session,
the ``req`` push out of the responder's, a ``reply`` (``confirm`` false)
into the responder's, the answer out of the requester's. What a client
spends building and parsing those frames is measured separately and taken
off, so the figure is what the broker's protocol layer and router cost per
request, between the socket reads and writes (docs/internals.md,
"Latency"). Prints the best of five runs, in µs per request.
"""

from __future__ import annotations

import argparse
import time

from minibroker.core.broker import Broker
from minibroker.protocol.codec import RawFrameDecoder, pack_frame
from minibroker.protocol.session import Session

SUBJECT = "bench.echo"
BODY = b"x" * 100


def _session(broker: Broker, conn_id: int) -> Session:
    session = Session(broker, conn_id)
    session.receive_data(pack_frame({"op": "hello", "id": 1, "version": 1, "client": "b"}), 0.0)
    session.data_to_send()
    return session


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args(argv)
    broker = Broker()
    requester, responder = _session(broker, 1), _session(broker, 2)
    responder.receive_data(pack_frame({"op": "respond", "id": 2, "subject": SUBJECT}), 0.0)
    responder.data_to_send()
    decoder = RawFrameDecoder()

    def round_trip(i: int) -> None:
        request = {"op": "request", "id": 10 + i, "subject": SUBJECT, "body": BODY, "timeout": 5.0}
        requester.receive_data(pack_frame(request), 1.0)
        decoder.receive_data(responder.data_to_send())
        (push,) = list(decoder.values())
        rid = push["requests"][0]["rid"]
        reply = {"op": "reply", "id": 10 + i, "rid": rid, "body": BODY, "confirm": False}
        responder.receive_data(pack_frame(reply), 1.0)
        if not requester.data_to_send():
            raise AssertionError("no answer for the requester")

    push_frame = pack_frame(
        {"op": "req", "sub": 1, "requests": [{"rid": 1, "subject": SUBJECT, "body": BODY}]}
    )

    def client_side(i: int) -> None:
        pack_frame(
            {"op": "request", "id": 10 + i, "subject": SUBJECT, "body": BODY, "timeout": 5.0}
        )
        decoder.receive_data(push_frame)
        (push,) = list(decoder.values())
        pack_frame({"op": "reply", "id": 10 + i, "rid": push["requests"][0]["rid"], "body": BODY})

    for i in range(2000):
        round_trip(i)
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for i in range(args.count):
            round_trip(i)
        both = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(args.count):
            client_side(i)
        clients = time.perf_counter() - start
        runs.append((both - clients) / args.count * 1e6)
    print(
        f"broker sans-I/O per request/reply: {min(runs):.1f} µs (best of 5; "
        f"runs {', '.join(f'{r:.1f}' for r in runs)})"
    )


if __name__ == "__main__":
    main()
