"""An oversized request costs its requester, not the responder (issue 14 item 7).

A request too big for a ``req`` push ended the responder it was routed to
(``end too_large``) and the requester got a misleading ``responder_gone``;
the next one ended the next responder, then every request got
``no_responders``. Now the requester gets ``too_large`` and the responders
stay; a reply too big for the requester's answer is refused to the responder.
"""

from __future__ import annotations

from test_items_fit_a_frame import BIG_HEADER, small_frames


def test_an_oversized_request_is_too_large_for_its_requester_and_the_responder_stays() -> None:
    _, a, b = small_frames()
    sub = b.call("respond", subject="svc")["sub"]
    for _ in range(2):  # the second one used to end the next responder
        error = a.error("request", subject="svc", body=b"x" * 500, headers=BIG_HEADER)
        assert error.code == "too_large"
    assert not b.pump()  # no req push, no end
    rid = a.send("request", subject="svc", body=b"hi")
    [push] = b.pump()
    assert (push["op"], push["sub"]) == ("req", sub)
    [incoming] = push["requests"]
    error = b.error("reply", rid=incoming["rid"], body=b"y" * 500, headers=BIG_HEADER)
    assert error.code == "too_large"  # the responder hears it, and may answer again
    assert b.call("reply", rid=incoming["rid"], body=b"hello") is True
    assert a.result(rid) == {"body": b"hello"}
