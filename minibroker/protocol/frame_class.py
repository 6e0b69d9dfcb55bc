"""Frame classes: typed and slotted like frozen dataclasses, but cheap to define.

``dataclasses`` writes and compiles ``__init__``, ``__repr__``, ``__eq__``
and ``__hash__`` for every class as it is defined, and builds the class a
second time for ``slots=True``: about a millisecond per class, so the
protocol's frames cost every ``minibroker serve`` some 40 ms of CPU before
the first byte is read (issue 19). A class built on :class:`Frame` costs
what a plain class costs. Its metaclass turns the annotated fields into
``__slots__`` and records their defaults; ``__init__`` is compiled the first
time the class is instantiated (a process meets a handful of the frames, not
all of them); equality, hash and repr are shared by every class.

Type checkers see a frame class as a frozen dataclass (PEP 681's
``dataclass_transform``): the constructor's signature comes from the fields,
and assigning to a field is an error. At run time nothing stops an
assignment; mypy does, and the hot paths save the cost of ``object.__setattr__``
that a frozen dataclass pays per field.

Defaults must be immutable (None, numbers, strings): they are shared by
every instance, as dataclasses would refuse a mutable one.
"""

from __future__ import annotations

from typing import Any, ClassVar, dataclass_transform

#: The marker of a field without a default.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()


class Field:
    """One field of a frame class: its name and default (``MISSING`` if required)."""

    __slots__ = ("default", "name")

    def __init__(self, name: str, default: object) -> None:
        self.name = name
        self.default = default

    @property
    def required(self) -> bool:
        return self.default is MISSING

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.default!r})"


@dataclass_transform(frozen_default=True)
class FrameMeta(type):
    """Builds a frame class: fields from annotations, slots, a lazily compiled ``__init__``."""

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> FrameMeta:
        inherited: tuple[Field, ...] = ()
        for base in bases:
            inherited += getattr(base, "__frame_fields__", ())
        own: list[Field] = []
        # Annotations are strings (``from __future__ import annotations``): a
        # ClassVar is told by its text, without evaluating anything.
        for field_name, annotation in namespace.get("__annotations__", {}).items():
            if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            own.append(Field(field_name, namespace.pop(field_name, MISSING)))
        fields = inherited + tuple(own)
        seen_default = False
        for field in fields:
            if field.required and seen_default:
                raise TypeError(f"{name}: field {field.name!r} without a default follows one with")
            seen_default = seen_default or not field.required
        namespace["__slots__"] = tuple(field.name for field in own)
        namespace["__frame_fields__"] = fields
        # Every class gets its own entry, so none inherits a parent's compiled __init__.
        namespace["__init__"] = _first_init
        return super().__new__(mcs, name, bases, namespace, **kwargs)


def _first_init(self: Any, *args: Any, **kwargs: Any) -> None:
    """Compile this class's ``__init__``, install it, and run it."""
    cls = type(self)
    init = _compile_init(cls)
    cls.__init__ = init
    init(self, *args, **kwargs)


def _compile_init(cls: type) -> Any:
    fields: tuple[Field, ...] = cls.__frame_fields__  # type: ignore[attr-defined]
    namespace: dict[str, object] = {}
    parameters = ["self"]
    body = []
    for field in fields:
        if field.required:
            parameters.append(field.name)
        else:
            namespace[f"_default_{field.name}"] = field.default
            parameters.append(f"{field.name}=_default_{field.name}")
        body.append(f"    self.{field.name} = {field.name}")
    source = f"def __init__({', '.join(parameters)}):\n" + ("\n".join(body) or "    pass")
    exec(source, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    return init


class Frame(metaclass=FrameMeta):
    """Base of every frame class (and of the parts frames carry)."""

    __frame_fields__: ClassVar[tuple[Field, ...]]

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, field.name) for field in self.__frame_fields__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.__frame_fields__)
        return f"{type(self).__qualname__}({shown})"


def fields(frame_class: type | object) -> tuple[Field, ...]:
    """The fields of a frame class (or of a frame), in constructor order."""
    cls = frame_class if isinstance(frame_class, type) else type(frame_class)
    found: tuple[Field, ...] | None = getattr(cls, "__frame_fields__", None)
    if found is None:
        raise TypeError(f"{cls.__name__} is not a frame class")
    return found


def is_frame_class(value: object) -> bool:
    """True for a class built on :class:`Frame` (not for an instance)."""
    return isinstance(value, FrameMeta)
