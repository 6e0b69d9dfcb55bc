"""Value classes (minibroker/value_class.py) behave as the dataclasses they replace."""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import pytest

from minibroker.value_class import Value, asdict, field, fields, replace


class Point(Value, frozen=True):
    x: int
    y: int = 0
    label: str = field(default="", compare=False, repr=False)


class Bag(Value):
    name: str
    items: list[int] = field(default_factory=list)
    KIND: ClassVar[str] = "bag"


class Checked(Value, frozen=True):
    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low above high")


class Child(Bag):
    size: int = 1


class Pair(NamedTuple):
    left: Point
    right: int


def test_constructor_takes_fields_in_order_with_defaults() -> None:
    assert (Point(1).x, Point(1).y) == (1, 0)
    assert Point(1, 2) == Point(x=1, y=2)
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, z=3)  # type: ignore[call-arg]


def test_default_factory_gives_each_instance_its_own_object() -> None:
    first, second = Bag("a"), Bag("b")
    first.items.append(1)
    assert second.items == []
    assert Bag("c", [5]).items == [5]


def test_equality_and_hash_skip_uncompared_fields() -> None:
    assert Point(1, 2, label="a") == Point(1, 2, label="b")
    assert hash(Point(1, 2, label="a")) == hash(Point(1, 2, label="b"))
    assert Point(1, 2) != Point(1, 3)
    assert Point(1) != (1, 0)


def test_mutable_classes_are_not_hashable_frozen_ones_are() -> None:
    with pytest.raises(TypeError):
        hash(Bag("a"))
    assert len({Point(1), Point(1), Point(2)}) == 2


def test_repr_names_fields_except_hidden_ones() -> None:
    assert repr(Point(1, 2, label="secret")) == "Point(x=1, y=2)"
    assert repr(Bag("a", [1])) == "Bag(name='a', items=[1])"


def test_slots_and_class_variables() -> None:
    bag = Bag("a")
    assert not hasattr(bag, "__dict__")
    with pytest.raises(AttributeError):
        bag.other = 1  # type: ignore[attr-defined]
    assert Bag.KIND == "bag"
    assert [f.name for f in fields(Bag)] == ["name", "items"]


def test_post_init_runs_on_construction_and_replace() -> None:
    checked = Checked(1, 2)
    with pytest.raises(ValueError):
        Checked(3, 2)
    with pytest.raises(ValueError):
        replace(checked, low=5)


def test_replace_copies_with_changes_and_refuses_unknown_fields() -> None:
    point = Point(1, 2, label="a")
    moved = replace(point, y=5)
    assert (moved.x, moved.y, moved.label) == (1, 5, "a")
    assert point.y == 2
    with pytest.raises(TypeError, match="no field 'z'"):
        replace(point, z=1)


def test_asdict_turns_nested_values_into_dicts() -> None:
    bag = Bag("a", [1, 2])
    assert asdict(bag) == {"name": "a", "items": [1, 2]}
    assert asdict(bag)["items"] is not bag.items

    class Holder(Value):
        points: list[Point]
        by_name: dict[str, Point]
        pair: Pair

    holder = Holder([Point(1)], {"p": Point(2)}, Pair(Point(3), 4))
    assert asdict(holder) == {
        "points": [{"x": 1, "y": 0, "label": ""}],
        "by_name": {"p": {"x": 2, "y": 0, "label": ""}},
        "pair": Pair({"x": 3, "y": 0, "label": ""}, 4),  # type: ignore[arg-type]
    }


def test_subclasses_extend_the_parent_fields() -> None:
    child = Child("c", size=3)
    assert (child.name, child.items, child.size) == ("c", [], 3)
    assert Bag("b").items == []  # the parent's own __init__ still works
    assert [f.name for f in fields(child)] == ["name", "items", "size"]


def test_definition_errors() -> None:
    with pytest.raises(TypeError, match="without a default"):

        class Bad(Value):
            a: int = 0
            b: int

    with pytest.raises(TypeError, match="mutable default"):

        class Shared(Value):
            a: list[int] = []

    with pytest.raises(TypeError, match="not both"):
        field(default=1, default_factory=int)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="not a value class"):
        fields(int)
