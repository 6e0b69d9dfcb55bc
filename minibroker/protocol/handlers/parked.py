"""``PARKED``: what a handler returns when the core will finish its request later.

A handler turns one request frame into a call on the core and returns the
response's ``result`` value (plain msgpack-ready data), or ``PARKED`` when
the core has parked the request (a long poll, a request/reply call) and
will finish it through the session's ``resolve``/``reject``. ``NO_RESPONSE``
(the same marker, for the session) is for a request the client asked not to
be answered on success (a ``reply`` sent with ``confirm`` false).
"""

from __future__ import annotations

from typing import Any


class _Parked:
    def __repr__(self) -> str:
        return "PARKED"


#: Returned by a handler whose request the core has parked (long poll, request/reply).
PARKED: Any = _Parked()

#: Returned by a handler whose request gets no response when it succeeds
#: (``reply`` with ``confirm`` false); the session treats it as ``PARKED``.
NO_RESPONSE: Any = PARKED
