"""Integers and numbers as SQS reads them, strictly.

Python's ``int()`` and ``float()`` accept more than SQS does (``" 30"``,
``"1_000"``, Arabic-Indic digits, ``"NaN"``), and a JSON number may be a
float of any size: ``1e400`` parses to infinity, and ``int(inf)`` raises
OverflowError, which used to surface as a 500. Everything numeric a client
sends goes through here, so a bad value is the client's 400, never the
broker's 500.
"""

from __future__ import annotations

import math
import re
from typing import Final

#: An integer in text (the query protocol sends every value as text): ASCII only.
_INTEGER: Final = re.compile(r"[+-]?[0-9]{1,30}")
#: A number attribute's value: a decimal, optionally with an exponent (no NaN,
#: no Infinity, no underscores or spaces), as SQS's own parser takes it.
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,9})?")


def integer_of(raw: object) -> int | None:
    """``raw`` as an integer, or None if it is not one: a JSON integer, a finite
    float with no fraction (``5.0``), or a string of ASCII digits with an
    optional sign. Not a bool, ``1.5``, infinity, NaN, ``" 5"`` or ``"1_000"``."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return int(raw) if math.isfinite(raw) and raw.is_integer() else None
    if isinstance(raw, str) and _INTEGER.fullmatch(raw):
        return int(raw)
    return None


def is_number(text: str) -> bool:
    """Whether ``text`` is a valid value of a ``Number`` message attribute: a
    decimal number, finite as a double."""
    return _NUMBER.fullmatch(text) is not None and math.isfinite(float(text))


def reject_constant(name: str) -> float:
    """``json.loads``'s ``parse_constant``: NaN, Infinity and -Infinity are not
    JSON (Python accepts them by default), so a body holding one is not valid JSON."""
    raise ValueError(f"{name} is not a JSON number")
