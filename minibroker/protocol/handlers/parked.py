"""``PARKED``: what a handler returns when the core will finish its request later.

A handler turns one request frame into a call on the core and returns the
response's ``result`` value (plain msgpack-ready data), or ``PARKED`` when
the core has parked the request (a long poll, a request/reply call) and
will finish it through the session's ``resolve``/``reject``.
"""

from __future__ import annotations

from typing import Any


class _Parked:
    def __repr__(self) -> str:
        return "PARKED"


#: Returned by a handler whose request the core has parked (long poll, request/reply).
PARKED: Any = _Parked()
