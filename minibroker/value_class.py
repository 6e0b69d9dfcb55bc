"""Value classes: slotted records typed like dataclasses, but cheap to define.

``dataclasses`` writes and compiles ``__init__``, ``__repr__``, ``__eq__``
(and for ``frozen=True`` ``__setattr__``, ``__delattr__`` and ``__hash__``)
for every class as it is defined, and builds the class a second time for
``slots=True``: 2 to 4 million instructions per class. The core's options,
statistics and configuration were some 30 such classes, all defined by every
``minibroker serve`` before it reads a byte: a third of what it spent above
``import trio`` (issue 19). A class built on :class:`Value` costs about
what a plain class costs. Its metaclass turns the annotated fields into
``__slots__`` and records their defaults; ``__init__`` is compiled the first
time the class is instantiated (a process meets a few of these classes, not
all of them); equality, hash and repr are shared by every class.

Besides plain fields: ``field(default_factory=..., compare=False,
repr=False)``, ``__post_init__``, mutable classes next to frozen ones, and
:func:`replace`, :func:`asdict` and :func:`fields` in place of the
``dataclasses`` ones. The protocol's frames
(:mod:`minibroker.protocol.frame_class`) are value classes frozen by default.

Type checkers see a value class as a dataclass (PEP 681's
``dataclass_transform``); ``class Limits(Value, frozen=True)`` is a frozen
one, so assigning to its fields is a type error. At run time nothing stops
an assignment (mypy does, and a frozen class's ``__init__`` saves the
``object.__setattr__`` per field a frozen dataclass pays); a frozen class is
hashable by its compared fields, a mutable one is not hashable, as with
dataclasses. Plain defaults must be immutable (None, numbers, strings,
tuples): they are shared by every instance. Anything else comes from a
``default_factory``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, dataclass_transform, overload

_T = TypeVar("_T")
_V = TypeVar("_V", bound="Value")

#: The marker of a field without a default.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()

#: Default types that are safe to share between instances.
_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, tuple, frozenset)


class Field:
    """One field of a value class: its name, default or factory, and whether
    it takes part in equality (``compare``) and in ``repr``."""

    __slots__ = ("compare", "default", "default_factory", "name", "repr")

    def __init__(
        self,
        default: object = MISSING,
        default_factory: Callable[[], object] | None = None,
        compare: bool = True,
        repr: bool = True,
    ) -> None:
        if default is not MISSING and default_factory is not None:
            raise TypeError("a field has a default or a default_factory, not both")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.compare = compare
        self.repr = repr

    @property
    def required(self) -> bool:
        return self.default is MISSING and self.default_factory is None

    def __repr__(self) -> str:
        return f"Field({self.name!r}, default={self.default!r})"


@overload
def field(*, default: _T, compare: bool = True, repr: bool = True) -> _T: ...
@overload
def field(*, default_factory: Callable[[], _T], compare: bool = True, repr: bool = True) -> _T: ...
@overload
def field(*, compare: bool = True, repr: bool = True) -> Any: ...
def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | None = None,
    compare: bool = True,
    repr: bool = True,
) -> Any:
    """A field with a ``default_factory``, or left out of equality or ``repr``."""
    return Field(default, default_factory, compare, repr)


@dataclass_transform(field_specifiers=(field, Field))
class ValueMeta(type):
    """Builds a value class: fields from annotations, slots, a lazily compiled ``__init__``."""

    def __new__(
        mcs,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        frozen: bool = False,
        **kwargs: Any,
    ) -> ValueMeta:
        inherited: tuple[Field, ...] = ()
        for base in bases:
            inherited += getattr(base, "__value_fields__", ())
        own: list[Field] = []
        # Annotations are strings (``from __future__ import annotations``): a
        # ClassVar is told by its text, without evaluating anything.
        for field_name, annotation in namespace.get("__annotations__", {}).items():
            if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            spec = namespace.pop(field_name, MISSING)
            if not isinstance(spec, Field):
                if spec is not MISSING and not isinstance(spec, _IMMUTABLE):
                    raise TypeError(f"{name}.{field_name}: mutable default, use default_factory")
                spec = Field(spec)
            spec.name = field_name
            own.append(spec)
        fields = inherited + tuple(own)
        seen_default = False
        for spec in fields:
            if spec.required and seen_default:
                raise TypeError(f"{name}: field {spec.name!r} without a default follows one with")
            seen_default = seen_default or not spec.required
        namespace["__slots__"] = tuple(spec.name for spec in own)
        namespace["__value_fields__"] = fields
        # Every class gets its own entry, so none inherits a parent's compiled __init__.
        namespace["__init__"] = _first_init
        if not frozen:
            namespace.setdefault("__hash__", None)  # mutable and compared by value
        return super().__new__(mcs, name, bases, namespace, **kwargs)


def _first_init(self: Any, *args: Any, **kwargs: Any) -> None:
    """Compile this class's ``__init__``, install it, and run it."""
    cls = type(self)
    init = _compile_init(cls)
    cls.__init__ = init
    init(self, *args, **kwargs)


def _compile_init(cls: type) -> Any:
    specs: tuple[Field, ...] = cls.__value_fields__  # type: ignore[attr-defined]
    namespace: dict[str, object] = {"_MISSING": MISSING}
    parameters = ["self"]
    body = []
    for spec in specs:
        if spec.default_factory is not None:
            namespace[f"_factory_{spec.name}"] = spec.default_factory
            parameters.append(f"{spec.name}=_MISSING")
            body.append(
                f"    self.{spec.name} = _factory_{spec.name}()"
                f" if {spec.name} is _MISSING else {spec.name}"
            )
            continue
        if spec.required:
            parameters.append(spec.name)
        else:
            namespace[f"_default_{spec.name}"] = spec.default
            parameters.append(f"{spec.name}=_default_{spec.name}")
        body.append(f"    self.{spec.name} = {spec.name}")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__({', '.join(parameters)}):\n" + ("\n".join(body) or "    pass")
    exec(source, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    return init


class Value(metaclass=ValueMeta):
    """Base of every value class; ``class X(Value, frozen=True)`` for a frozen one."""

    __value_fields__: ClassVar[tuple[Field, ...]]

    def _compared(self) -> tuple[object, ...]:
        return tuple(getattr(self, f.name) for f in self.__value_fields__ if f.compare)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in self.__value_fields__ if f.repr
        )
        return f"{type(self).__qualname__}({shown})"


def fields(value: type | object) -> tuple[Field, ...]:
    """The fields of a value class (or of a value), in constructor order."""
    cls = value if isinstance(value, type) else type(value)
    found: tuple[Field, ...] | None = getattr(cls, "__value_fields__", None)
    if found is None:
        raise TypeError(f"{cls.__name__} is not a value class")
    return found


def replace(value: _V, **changes: Any) -> _V:
    """A copy of ``value`` with ``changes`` applied, built through ``__init__``
    (so ``__post_init__`` runs again), as ``dataclasses.replace``."""
    for name in changes:
        if not any(f.name == name for f in fields(value)):
            raise TypeError(f"{type(value).__name__} has no field {name!r}")
    current = {f.name: getattr(value, f.name) for f in fields(value)}
    return type(value)(**(current | changes))


def asdict(value: Value) -> dict[str, Any]:
    """``value`` as a dict, value classes inside it (also in lists, tuples
    and dicts) turned into dicts too, as ``dataclasses.asdict``."""
    return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}


def _plain(item: object) -> object:
    if isinstance(item, Value):
        return asdict(item)
    if isinstance(item, tuple) and hasattr(item, "_fields"):  # a named tuple
        named: Any = type(item)
        return named(*map(_plain, item))
    if isinstance(item, list | tuple):
        return type(item)(map(_plain, item))
    if isinstance(item, dict):
        return {_plain(k): _plain(v) for k, v in item.items()}
    return item
