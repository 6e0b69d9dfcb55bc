"""The one rule for every duration a client may send: a floor and a ceiling.

Every duration (a queue's ``message_ttl`` and ``visibility_timeout``, a
fetch's ``wait``, a nack's ``delay``, a read's ``wait``, a request's
``timeout``, a log's ``retention_seconds``) ends up as a timer armed at
``now + seconds``. Below about 1e-16 s that sum *is* ``now`` in floating
point: a timer that re-arms itself that way never gets later, and a timer
loop that fires "everything due" would never finish (issue 14 found two
ways to freeze the broker like that). So no duration may be shorter than
:data:`MIN_SECONDS`, one millisecond, far longer than any rounding and
shorter than anything a real client means; 0 is accepted only where it has
a meaning of its own ("do not wait", "no delay"). Each option keeps its own
ceiling (12 hours for a visibility timeout, the configured maximum wait...).

Values already stored by an older broker (a durable queue or log declared
with a tiny duration) are not refused at recovery, which must never fail
over an option: :func:`clamp_seconds` brings them into range instead.
"""

from __future__ import annotations

import math
from typing import Final

from minibroker.errors import BadRequest

#: The shortest duration a client may ask for, in seconds (one millisecond).
MIN_SECONDS: Final = 0.001


def check_seconds(label: str, value: object, maximum: float, *, allow_zero: bool = False) -> float:
    """``value`` as seconds in [MIN_SECONDS, maximum], or exactly 0 with ``allow_zero``.

    Raises BadRequest naming the option and the allowed range otherwise
    (NaN, infinities, negatives, and the tiny values that would not move a
    timer forward).
    """
    if type(value) not in (int, float):
        raise BadRequest(f"{label} must be a number of seconds")
    seconds = float(value)  # type: ignore[arg-type]
    if seconds == 0 and allow_zero:
        return 0.0
    if not (math.isfinite(seconds) and MIN_SECONDS <= seconds <= maximum):
        zero = "0 or " if allow_zero else ""
        raise BadRequest(
            f"{label} must be {zero}between {MIN_SECONDS:g} and {maximum:g} seconds, got {value!r}"
        )
    return seconds


def clamp_seconds(seconds: float, maximum: float) -> float:
    """``seconds`` brought into [MIN_SECONDS, maximum] (for values read back from disk)."""
    if not math.isfinite(seconds):
        return maximum
    return min(max(seconds, MIN_SECONDS), maximum)
