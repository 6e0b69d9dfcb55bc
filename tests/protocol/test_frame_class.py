"""Frame classes behave like the frozen dataclasses they replace (see frame_class.py)."""

from __future__ import annotations

from typing import ClassVar

import pytest

from minibroker.protocol.frame_class import MISSING, Frame, fields, is_frame_class


class Base(Frame):
    kind: ClassVar[str] = "base"
    id: int


class Child(Base):
    name: str
    note: str | None = None


def test_fields_are_slots_in_constructor_order_with_their_defaults() -> None:
    assert [(f.name, f.default) for f in fields(Child)] == [
        ("id", MISSING),
        ("name", MISSING),
        ("note", None),
    ]
    child = Child(1, "a")
    assert (child.id, child.name, child.note) == (1, "a", None)
    assert Child(id=1, name="a", note="n").note == "n"
    with pytest.raises(AttributeError):
        child.other = 1  # type: ignore[attr-defined]  # slots: no instance dict
    assert Child.kind == "base" and "kind" not in [f.name for f in fields(Child)]


def test_a_subclass_never_runs_its_parents_compiled_init() -> None:
    # The parent's __init__ is compiled first; the child must still get its own.
    Base(1)
    assert Child(2, "b").name == "b"
    with pytest.raises(TypeError):
        Base(1, "extra")  # type: ignore[call-arg]


def test_equality_hash_and_repr_follow_the_fields() -> None:
    assert Child(1, "a") == Child(1, "a", None)
    assert Child(1, "a") != Child(1, "b")
    assert Child(1, "a") != Base(1)
    assert hash(Child(1, "a")) == hash(Child(1, "a"))
    assert repr(Child(1, "a")) == "Child(id=1, name='a', note=None)"


def test_a_required_field_after_a_default_is_refused() -> None:
    with pytest.raises(TypeError, match="'b' without a default"):

        class Bad(Frame):
            a: int = 0
            b: int


def test_only_frame_classes_are_frame_classes() -> None:
    assert is_frame_class(Child) and not is_frame_class(Child(1, "a"))
    assert not is_frame_class(int)
    with pytest.raises(TypeError):
        fields(int)
