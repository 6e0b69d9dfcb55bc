"""Error, ``end`` and ``bye`` frames that always fit the frame limit.

An error message often echoes what the client sent: an unknown op name, a
name that breaks the rules, a value out of range. Echoed whole, a request
of 16 MiB whose ``op`` is 16 MiB of text got an answer *larger* than the
16 MiB the server promises never to send (issue 14 item 8), and the client's
decoder dropped the connection over it. So every string in an error is cut
here, on its way out, to :data:`MAX_ERROR_TEXT_BYTES` of UTF-8 (at a
character boundary, with a mark saying how much went), and ``details`` are
left out altogether if the frame would still not fit: the code and the
message are the error, the details only extras.

The smallest frame limit the server accepts (1024 bytes) leaves room for a
message of that size plus the envelope, so these frames always fit.
"""

from __future__ import annotations

from typing import Final

from minibroker.errors import BrokerError
from minibroker.protocol.codec import HEADER_SIZE, pack_frame

#: Longest UTF-8 text of any string in an error frame (messages, echoed names).
MAX_ERROR_TEXT_BYTES: Final = 400


def shorten(text: str, max_bytes: int = MAX_ERROR_TEXT_BYTES) -> str:
    """``text`` if its UTF-8 form fits ``max_bytes``, else its start and a note of the cut."""
    # A character takes 1 to 4 bytes: only a text in between needs measuring.
    if len(text) <= max_bytes // 4:
        return text
    if len(text) <= max_bytes and len(text.encode("utf-8", "surrogatepass")) <= max_bytes:
        return text
    note = f"... ({len(text)} characters, cut)"
    kept = text[: max_bytes - len(note)]
    # Cut further while multi-byte characters make the start too long.
    while len(kept.encode("utf-8", "surrogatepass")) > max_bytes - len(note):
        kept = kept[: len(kept) * 3 // 4]
    return kept + note


def _bounded(value: object) -> object:
    """``details`` with every string in them shortened (one level of containers deep)."""
    if isinstance(value, str):
        return shorten(value)
    if isinstance(value, dict):
        return {k: _bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded(v) for v in value]
    return value


def error_frame(request_id: int | None, error: BrokerError, max_frame_bytes: int) -> bytes:
    """The ``error`` frame for ``error``, at most ``max_frame_bytes`` long (prefix excluded)."""
    frame: dict[str, object] = {
        "op": "error",
        "code": error.code,
        "message": shorten(error.message),
    }
    if request_id is not None:
        frame["id"] = request_id
    if error.details:
        frame["details"] = _bounded(error.details)
        data = pack_frame(frame)
        if len(data) - HEADER_SIZE <= max_frame_bytes:
            return data
        del frame["details"]
    return pack_frame(frame)


def end_frame(sub_id: int, error: BrokerError) -> bytes:
    """The ``end`` push that closes subscription ``sub_id`` because of ``error``."""
    return pack_frame(
        {"op": "end", "sub": sub_id, "code": error.code, "message": shorten(error.message)}
    )


def bye_frame(error: BrokerError) -> bytes:
    """The last frame on a connection the server closes because of ``error``."""
    return pack_frame({"op": "bye", "code": error.code, "message": shorten(error.message)})
