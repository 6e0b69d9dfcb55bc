"""A ``reply`` sent with ``confirm`` false: no ``ok`` back, errors still.

The clients send replies without waiting for the broker's answer, so that
answer is one frame per request nobody reads: a write in the broker, a
wake-up and two reads in the responder (docs/request-reply.md, "Wire protocol").
"""

from __future__ import annotations

from helpers import Net


def test_a_reply_without_confirm_gets_no_answer_and_its_errors_still_do() -> None:
    net = Net()
    requester, responder = net.connect(), net.connect()
    responder.call("respond", subject="svc")
    rid = requester.send("request", subject="svc", body=b"q")
    (incoming,) = [r for f in responder.pump() if f["op"] == "req" for r in f["requests"]]
    quiet = responder.send("reply", rid=incoming["rid"], body=b"a", confirm=False)
    assert requester.result(rid) == {"body": b"a"}
    assert not responder.has_response(quiet)  # one frame less per request
    late = responder.send("reply", rid=incoming["rid"], body=b"again", confirm=False)
    assert not responder.has_response(late)  # dropped and counted, as a confirmed one
    bad = responder.send("reply", rid="x", confirm=False)
    assert responder.response(bad)["code"] == "bad_request"
