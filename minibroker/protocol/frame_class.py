"""Frame classes: the protocol's frames as frozen value classes.

A frame class is a :mod:`minibroker.value_class` class that is frozen by
default: slotted, typed like a frozen dataclass (PEP 681's
``dataclass_transform``), cheap to define (``dataclasses`` costs about a
millisecond per class, some 40 ms for the protocol's frames on every
``minibroker serve``; issue 19), its ``__init__`` compiled the first time it
is instantiated, equality, hash and repr shared by every class. At run time
nothing stops an assignment to a field; mypy does, and the hot paths save
the ``object.__setattr__`` per field that a frozen dataclass pays.

Defaults must be immutable (None, numbers, strings): they are shared by
every instance.
"""

from __future__ import annotations

from typing import Any, dataclass_transform

from minibroker.value_class import MISSING, Field, Value, ValueMeta, field, fields

__all__ = ["MISSING", "Field", "Frame", "FrameMeta", "fields", "is_frame_class"]


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
class FrameMeta(ValueMeta):
    """A value class's metaclass whose classes are frozen unless they say otherwise."""

    def __new__(
        mcs,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        frozen: bool = True,
        **kwargs: Any,
    ) -> FrameMeta:
        return super().__new__(mcs, name, bases, namespace, frozen=frozen, **kwargs)  # type: ignore[return-value]


class Frame(Value, metaclass=FrameMeta):
    """Base of every frame class (and of the parts frames carry)."""


def is_frame_class(value: object) -> bool:
    """True for a class built on :class:`Frame` (not for an instance)."""
    return isinstance(value, FrameMeta)
