"""An append's size checks: the batch shortcut for bare bodies agrees with the
per-record rules on every batch, errors (which record, which limit) included.

``minibroker/core/logs.py::_checked_size`` checks a batch of bare bodies with
``len``/``max``/``sum`` over the whole list and falls back to the per-record
loop for anything else, or when some record breaks a limit (the loop names it).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minibroker.core.logs import RECORD_OVERHEAD, _checked_size
from minibroker.core.sizes import headers_size
from minibroker.errors import TooLarge
from minibroker.log_store import Entry

bodies = st.binary(max_size=40)
keyed = st.tuples(
    st.none() | st.binary(max_size=20),
    st.none() | st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
    bodies,
)
batches = st.lists(bodies | keyed, min_size=1, max_size=12) | st.lists(bodies, min_size=1)
limits = st.integers(0, 45)
max_items = st.none() | st.integers(RECORD_OVERHEAD, RECORD_OVERHEAD + 60)


def reference(entries: list[Entry], limit: int, max_item: int | None) -> Any:
    """The rules record by record: the body bytes, or what the first bad record breaks."""
    room = None if max_item is None else max_item - RECORD_OVERHEAD
    size = 0
    for index, entry in enumerate(entries):
        if isinstance(entry, bytes):
            key, length, item = None, len(entry), len(entry)
        else:
            key, headers, body = entry
            length = len(body)
            item = length + (0 if key is None else len(key)) + headers_size(headers)
        size += length
        if length > limit or (key is not None and len(key) > limit):
            return ("too large", limit, None)
        if room is not None and item > room:
            return ("too large", max_item, index)
    return size


@given(batches, limits, max_items)
def test_batch_checks_match_the_per_record_rules(
    entries: list[Entry], limit: int, max_item: int | None
) -> None:
    expected = reference(entries, limit, max_item)
    if isinstance(expected, int):
        assert _checked_size(entries, limit, max_item) == expected
        return
    with pytest.raises(TooLarge) as caught:
        _checked_size(entries, limit, max_item)
    _, expected_limit, expected_index = expected
    assert caught.value.details.get("limit") == expected_limit
    assert caught.value.details.get("index") == expected_index


def test_a_big_bare_body_is_named_by_the_loop() -> None:
    entries: list[Entry] = [b"a", b"b" * 30, b"c" * 50]
    with pytest.raises(TooLarge) as caught:
        _checked_size(entries, 100, RECORD_OVERHEAD + 40)
    assert caught.value.details["index"] == 2
