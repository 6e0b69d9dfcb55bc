"""CC and BCC routing (minibroker/amqp/sender_selected.py), without a socket.

The property: routing with several keys reaches each queue once, and exactly
the queues that routing with each key alone would reach, whatever the
exchange types and bindings (``Vhost._route_keys``, the general path, against
``Vhost.route`` with one key, the usual one); through exchange-to-exchange
bindings at least those, since every exchange on the way matches all the keys.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibroker.amqp.messages import CoreMessage, bcc_keys, to_core
from minibroker.amqp.sender_selected import (
    InvalidRouteHeader,
    decode_keys,
    encode_keys,
    header_routes,
)
from minibroker.amqp.vhost import Vhost, vhost_of
from minibroker.core.broker import Broker

KEYS = ["a", "b", "a.b", "c.d", "q0", "q1", "q2"]
QUEUES = ["q0", "q1", "q2"]
EXCHANGES = {"xd": "direct", "xf": "fanout", "xt": "topic", "xh": "headers"}
PATTERNS = ["a", "b", "a.*", "#", "c.#", "*.b"]


def _vhost(
    bindings: list[tuple[str, str, str]], exchange_bindings: list[tuple[str, str, str]]
) -> Vhost:
    vhost = vhost_of(Broker().namespace())
    for name, kind in EXCHANGES.items():
        vhost.declare_exchange(
            name,
            kind,
            passive=False,
            durable=False,
            auto_delete=False,
            internal=False,
            arguments={},
        )
    for queue in QUEUES:
        vhost.declare_queue(
            1,
            queue,
            passive=False,
            durable=False,
            exclusive=False,
            auto_delete=False,
            arguments={},
            now=0.0,
        )
    for queue, exchange, key in bindings:
        arguments: dict[str, object] = {"h": "1"} if EXCHANGES[exchange] == "headers" else {}
        vhost.bind(queue, exchange, key, arguments)
    for destination, source, key in exchange_bindings:
        if destination != source:
            vhost.bind_exchange(destination, source, key, {})
    return vhost


def _reached(vhost: Vhost, exchange: str, keys: list[str]) -> dict[str, int]:
    """How many copies each queue got from one publish with ``keys``, then emptied."""
    ex = vhost.exchange(exchange)
    vhost.route(ex, keys[0], CoreMessage(b"x", None), {"h": "1"}, 0.0, also=keys[1:])
    queues = vhost.namespace.queues
    got = {name: queues.get(name).ready_count for name in QUEUES}
    for name in QUEUES:
        queues.get(name).purge(0.0)
    return {name: count for name, count in got.items() if count}


@settings(max_examples=150, deadline=None)
@given(
    bindings=st.lists(
        st.tuples(
            st.sampled_from(QUEUES), st.sampled_from(list(EXCHANGES)), st.sampled_from(PATTERNS)
        ),
        max_size=8,
    ),
    exchange_bindings=st.lists(
        st.tuples(
            st.sampled_from(list(EXCHANGES)),
            st.sampled_from(list(EXCHANGES)),
            st.sampled_from(PATTERNS),
        ),
        max_size=4,
    ),
    exchange=st.sampled_from(["", *EXCHANGES]),
    keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=4),
)
def test_several_keys_reach_the_union_of_what_each_key_reaches_once(
    bindings: list[tuple[str, str, str]],
    exchange_bindings: list[tuple[str, str, str]],
    exchange: str,
    keys: list[str],
) -> None:
    vhost = _vhost(bindings, exchange_bindings)
    alone: set[str] = set()
    for key in keys:
        alone.update(_reached(vhost, exchange, [key]))
    together = _reached(vhost, exchange, keys)
    assert set(together.values()) <= {1}
    if any(source != destination for destination, source, _ in exchange_bindings):
        # Through an exchange-to-exchange binding the keys travel together:
        # each exchange on the way matches all of them (as RabbitMQ does, see
        # below), so together they may reach more than each key alone.
        assert set(together) >= alone
    else:
        assert set(together) == alone


def test_keys_travel_together_through_an_exchange_to_exchange_binding() -> None:
    """Probed on RabbitMQ 3.x: topic ``xt`` bound into direct ``xd`` with ``a``,
    a queue bound to ``xd`` with ``b``; a publish to ``xt`` with key ``a`` and
    CC ``b`` reaches the queue, although neither key alone does (``a`` stops
    at ``xd``, ``b`` at ``xt``)."""
    vhost = _vhost([("q0", "xd", "b")], [("xd", "xt", "a")])
    assert _reached(vhost, "xt", ["a"]) == {}
    assert _reached(vhost, "xt", ["b"]) == {}
    assert _reached(vhost, "xt", ["a", "b"]) == {"q0": 1}


def test_cc_and_bcc_must_be_arrays_and_only_their_strings_count() -> None:
    assert header_routes({"CC": ["a", 5, b"b", "c"]}, "CC") == ["a", "c"]
    assert header_routes({"x": 1}, "CC") == [] and header_routes(None, "BCC") == []
    with pytest.raises(InvalidRouteHeader, match=r'\{unacceptable_type_in_header,"CC",longstr\}'):
        header_routes({"CC": "a"}, "CC")
    with pytest.raises(InvalidRouteHeader, match=r'"BCC",signedint'):
        header_routes({"BCC": 5}, "BCC")
    with pytest.raises(InvalidRouteHeader, match=r'"BCC",void'):
        header_routes({"BCC": None}, "BCC")


@given(st.lists(st.text(max_size=20), max_size=5))
def test_bcc_keys_survive_the_core_headers(keys: list[str]) -> None:
    assert decode_keys(encode_keys(keys)) == keys
    message = to_core("ex", "rk", b"\x00\x00", {"x": "y"}, b"body", keys)
    assert bcc_keys(message.headers) == keys
    assert decode_keys("not json") == [] and decode_keys('{"a": 1}') == []
