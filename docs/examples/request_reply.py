"""Request/reply as a synchronous call: a price quote through the broker, with plain blocking code.

Run it with ``python docs/examples/request_reply.py``. It starts a real TCP
broker on a free port in a background thread (``minibroker.testing.run_in_thread``)
and talks to it with the blocking client, the way a Flask view, a script or
any code without an event loop would.

The pattern
-----------

A *responder* registers for a subject (``pricing.quote``); a *requester*
sends a request to the subject and waits for the answer, like a function
call. The broker picks exactly one responder (round robin when there are
several), carries the reply back to that one requester, and keeps the
deadline. Unlike a direct HTTP call, the requester needs no address: any
number of pricing instances can come and go behind the subject.

Every request ends in exactly one way, and the caller learns which:

* a **reply**;
* ``NoResponders`` **at once** when nobody serves the subject (no waiting
  for a timeout to discover that a service is down);
* ``ResponderError`` when the responder says the request failed;
* ``Timeout`` when no reply came within the request's deadline (the broker
  then forgets the request; a late reply is dropped and counted);
* ``ResponderGone`` when the responder holding it disconnects.

When to use it
--------------

When the caller cannot go on without the answer: a price, a permission
check, a lookup. It is the easiest pattern to build and to debug, at the
cost of coupling: the caller waits for the callee's latency, and fails when
the callee is down or slow. Anything that can happen a moment later is
better sent as a message (``work_queue.py``, ``choreography.py``).
"""

from __future__ import annotations

import json
import threading

import minibroker
from minibroker.client.rpc import Reply, ServeHandle, SyncIncomingRequest
from minibroker.client.sync import Client as BlockingClient
from minibroker.testing import run_in_thread

SUBJECT = "pricing.quote"
PRICES_CENTS = {"widget": 250, "gadget": 1200}

# The pricing backend for "antique" items is slow; the example releases it later.
slow_backend = threading.Event()


def quote(req: SyncIncomingRequest) -> Reply:
    """The responder's handler: runs on one of the service's worker threads."""
    ask = json.loads(req.body)
    item, quantity = ask["item"], ask["quantity"]
    if item == "antique":
        slow_backend.wait()  # longer than the caller is willing to wait
    if item not in PRICES_CENTS:
        raise minibroker.ResponderError(f"no price for {item!r}")
    total = PRICES_CENTS[item] * quantity
    return Reply(json.dumps({"item": item, "total_cents": total}).encode(), {"currency": "EUR"})


def ask(item: str, quantity: int = 1) -> bytes:
    return json.dumps({"item": item, "quantity": quantity}).encode()


def call(shop: BlockingClient, item: str, quantity: int, timeout: float) -> None:
    """One synchronous call, and what each outcome looks like to the caller."""
    try:
        reply = shop.request(SUBJECT, ask(item, quantity), timeout=timeout)
    except minibroker.NoResponders:
        print(f"quote {item}: NoResponders, at once (no pricing service is running)")
    except minibroker.ResponderError as error:
        print(f"quote {item}: ResponderError: {error.message}")
    except minibroker.Timeout:
        print(f"quote {item}: Timeout after {timeout} s (the broker gave up on it)")
    else:
        answer = json.loads(reply.body)
        currency = (reply.headers or {}).get("currency")
        print(f"quote {quantity} x {item}: {answer['total_cents'] / 100:.2f} {currency}")


def main() -> None:
    with run_in_thread() as broker, minibroker.connect_sync(broker.url) as shop:
        call(shop, "widget", 1, timeout=5.0)

        # The pricing service: its own connection, answering on 4 threads.
        with minibroker.connect_sync(broker.url, client_name="pricing") as service:
            handle = ServeHandle()
            server = threading.Thread(
                target=service.serve,
                args=(SUBJECT, quote),
                kwargs={"workers": 4, "handle": handle},
            )
            server.start()
            handle.ready.wait()  # registered: requests reach it from now on
            print("pricing service registered for", SUBJECT)

            call(shop, "widget", 3, timeout=5.0)
            call(shop, "gadget", 1, timeout=5.0)
            call(shop, "spaceship", 1, timeout=5.0)
            call(shop, "antique", 1, timeout=0.2)

            slow_backend.set()  # the late reply is dropped by the broker
            handle.stop()
            server.join()


if __name__ == "__main__":
    main()
