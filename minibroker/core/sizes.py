"""Upper bounds of the bytes items take in a batch, for cutting batches to a budget.

The core never encodes anything, but it decides how many items go into one
batch (a ``fetch`` answer, a ``req`` push), and the front end must be able
to promise that the frame around that batch fits the connection's frame
limit. So the sizes counted here are upper bounds of the msgpack encoding:
each string or ``bin`` header at its widest (5 bytes) and strings by their
UTF-8 length. Overestimating a few bytes per item only makes a batch a
little shorter; underestimating could make a frame the client refuses.
"""

from __future__ import annotations

from typing import Final

#: Bytes counted per header on top of its key and value: their msgpack
#: string headers, at their widest.
HEADER_OVERHEAD: Final = 10
#: The msgpack header of a map (the headers map itself), at its widest.
MAP_HEADER: Final = 5


def utf8_length(text: str) -> int:
    """Bytes of ``text`` in UTF-8, without encoding the (common) ASCII case."""
    # isascii() is a flag check in CPython: only a non-ASCII string, whose
    # UTF-8 form is longer than its len(), is encoded to be measured.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def headers_size(headers: dict[str, str] | None) -> int:
    """Bytes of a headers map's keys and values with their string headers (0 if none).

    The map's own header is left to the item's fixed overhead, which counts
    it whether or not the item has headers.
    """
    if not headers:
        return 0
    size = 0
    for key, value in headers.items():
        size += HEADER_OVERHEAD + utf8_length(key) + utf8_length(value)
    return size
