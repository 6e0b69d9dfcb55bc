"""The queue hot path's wire forms: ``put`` with bare bodies, compact ``fetch`` answers.

``put`` has a fast decoder (protocol/handlers/queues.py, ``decode_put``) that
must accept exactly what the generic schema decoder accepts, build the same
frame and leave every error message to it. A ``fetch`` with ``compact``
is answered with one map of columns (``encode_compact``) that the client
turns back into deliveries (``deliveries``); they must equal the
deliveries of the same answer in map form. And either side may be older:
a client that sends neither form gets what it always got.
"""

from __future__ import annotations

from typing import Any

from helpers import Net, assert_decoders_agree
from hypothesis import given
from hypothesis import strategies as st

from minibroker.client.queue_wire import Delivery, DeliveryBase, deliveries, raw_delivery_ids
from minibroker.core.queue_message import Message
from minibroker.protocol import frames
from minibroker.protocol.codec import InvalidFrame, decode_request
from minibroker.protocol.handlers.queues import decode_put, encode_compact, encode_deliveries
from minibroker.protocol.ops import OPS, REQUEST_DECODERS
from minibroker.protocol.schema import compile_decoder

generic = compile_decoder(frames.Put)

scalars = (
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3) | st.binary(max_size=3)
)
headers = (
    st.none() | st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2) | scalars
)
message = (
    st.dictionaries(
        st.sampled_from(["body", "headers", "other"]),
        st.one_of(scalars, headers, st.binary(max_size=5)),
    )
    | scalars
    | st.binary(max_size=4)
)
request = st.fixed_dictionaries(
    {"op": st.just("put"), "id": st.integers(0, 5) | scalars},
    optional={
        "queue": st.text(max_size=3) | scalars,
        "messages": st.lists(message, max_size=4) | scalars,
    },
)


@given(request)
def test_fast_put_decoder_agrees_with_the_generic_one(raw: dict[str, Any]) -> None:
    got = assert_decoders_agree(decode_put, generic, raw)
    if got is not None:
        assert type(got) is frames.Put
        assert all(type(m) in (frames.MessageIn, bytes) for m in got.messages)


def test_the_codec_decodes_puts_with_the_fast_decoder() -> None:
    assert OPS["put"].decode is decode_put
    raw = {"op": "put", "id": 1, "queue": "q", "messages": [b"x", {"body": b"y"}]}
    decoded = decode_request(raw, REQUEST_DECODERS)
    assert decoded == frames.Put(1, "q", [b"x", frames.MessageIn(b"y")])
    error = decode_request({**raw, "messages": [b"a", 7]}, REQUEST_DECODERS)
    assert isinstance(error, InvalidFrame)
    assert error.error.message == "field 'messages[1]' must be a map or binary, got int"


def test_hello_announces_the_extensions() -> None:
    client = Net().connect(hello=False)
    result = client.call("hello", version=frames.PROTOCOL_VERSION, client="t")
    assert result["extensions"] == ["put.bare", "fetch.compact", "request.cancel", "read.batches"]


def test_bare_and_mapped_puts_store_the_same_messages() -> None:
    client = Net().connect()
    client.call("queue.declare", queue="q")
    assert client.call("put", queue="q", messages=[b"one", b"two"]) == {"count": 2}
    mixed = [b"three", {"body": b"four", "headers": {"k": "v"}}, {"body": b"five"}]
    assert client.call("put", queue="q", messages=mixed) == {"count": 3}
    ready = client.call("queue.inspect", queue="q")["ready"]
    assert [m["body"] for m in ready] == [b"one", b"two", b"three", b"four", b"five"]
    assert [m.get("headers") for m in ready] == [None, None, None, {"k": "v"}, None]


def test_an_older_client_gets_deliveries_as_maps() -> None:
    """A client that does not ask for ``compact`` reads what it always read."""
    client = Net().connect()
    client.call("queue.declare", queue="q")
    client.call("put", queue="q", messages=[{"body": b"a"}, {"body": b"b", "headers": {"k": "v"}}])
    result = client.call("fetch", queue="q", max_messages=10)
    assert type(result) is list
    assert [(m["body"], m.get("headers"), m["delivery_count"]) for m in result] == [
        (b"a", None, 1),
        (b"b", {"k": "v"}, 1),
    ]
    assert client.call("ack", queue="q", deliveries=[m["delivery_id"] for m in result]) == {
        "count": 2
    }


def test_a_compact_fetch_answers_columns_parked_or_not() -> None:
    net = Net()
    client = net.connect()
    client.call("queue.declare", queue="q")
    assert client.call("fetch", queue="q", max_messages=5, compact=True) == {"bodies": []}
    parked = client.send("fetch", queue="q", max_messages=5, wait=10.0, compact=True)
    client.call("put", queue="q", messages=[b"a", b"b"])
    answer = client.result(parked)
    assert answer == {
        "first_id": answer["first_id"],
        "bodies": [b"a", b"b"],
        "delivery_count": 1,
        "published_at": answer["published_at"],
    }
    ids = raw_delivery_ids(answer)
    assert ids == [answer["first_id"], answer["first_id"] + 1]
    assert client.call("ack", queue="q", deliveries=ids) == {"count": 2}
    empty = client.send("fetch", queue="q", max_messages=5, wait=1.0, compact=True)
    net.advance(2)
    assert client.result(empty) == {"bodies": []}


messages = st.lists(
    st.tuples(
        st.binary(max_size=4),
        st.none() | st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2),
        st.integers(1, 3),
        st.sampled_from([1_700_000_000_000, 1_700_000_000_001]),
    ),
    max_size=6,
)


def _delivered(items: list[tuple[bytes, Any, int, int]], first_id: int) -> list[Message]:
    out = []
    for offset, (body, headers, count, published_at) in enumerate(items):
        m = Message(body, headers, published_at, delivery_count=count)
        m.delivery_id = first_id + offset
        out.append(m)
    return out


def _fields(deliveries: list[Delivery]) -> list[tuple[Any, ...]]:
    return [
        (d.queue, d.delivery_id, d.body, d.headers or None, d.delivery_count, d.published_at)
        for d in deliveries
    ]


@given(messages, st.integers(1, 2**40))
def test_compact_answers_give_the_deliveries_of_the_map_form(
    items: list[tuple[bytes, Any, int, int]], first_id: int
) -> None:
    delivered = _delivered(items, first_id)
    settler = object()
    compact = encode_compact(delivered)
    maps = encode_deliveries(delivered)
    assert type(compact) is dict
    from_compact = list(deliveries(Delivery, "q", settler, compact))
    from_maps = list(deliveries(Delivery, "q", settler, maps))
    assert _fields(from_compact) == _fields(from_maps)
    assert all(d._settler is settler and d._settled is None for d in from_compact)
    assert raw_delivery_ids(compact) == raw_delivery_ids(maps)


def _slots(deliveries: list[Delivery]) -> list[tuple[Any, ...]]:
    return [tuple(getattr(d, name) for name in DeliveryBase.__slots__) for d in deliveries]


@given(
    st.lists(st.binary(max_size=4), max_size=6),
    st.integers(1, 2**40),
    st.integers(1, 3),
    st.integers(0, 2**42),
)
def test_the_usual_compact_answer_is_built_as_the_general_form(
    bodies: list[bytes], first_id: int, count: int, published_at: int
) -> None:
    # One count and one time for all, no headers: ``deliveries`` builds these
    # without the general form's per-delivery columns; listing the same
    # values as columns takes the general form.
    usual = {"first_id": first_id, "bodies": bodies, "delivery_count": count}
    usual["published_at"] = published_at
    n = len(bodies)
    general = {**usual, "delivery_count": [count] * n, "published_at": [published_at] * n}
    settler = object()
    for columns in (general, {**general, "headers": [None] * n}):
        fast = list(deliveries(Delivery, "q", settler, usual))
        assert _slots(fast) == _slots(list(deliveries(Delivery, "q", settler, columns)))
        assert [d.delivery_id for d in fast] == list(range(first_id, first_id + n))


def test_deliveries_that_are_not_a_range_go_as_maps() -> None:
    delivered = _delivered([(b"a", None, 1, 5), (b"b", None, 1, 5)], 10)
    delivered[1].delivery_id = 20
    assert encode_compact(delivered) == encode_deliveries(delivered)
