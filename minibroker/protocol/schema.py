"""Turn decoded msgpack maps into typed frames, and back.

Each frame type is a frame class (see frame_class.py) whose annotations *are* its wire
schema: ``queue: str`` means the map must carry a string under ``"queue"``;
``wait: float = 0.0`` means an optional number; ``headers: dict[str, str] |
None`` an optional string map. From those annotations this module compiles,
once per class, a checker that validates a decoded map and builds the
instance. A wrong type, a missing field or an out-of-range integer becomes a
``BadRequest`` naming the field, so a client author reads exactly what to fix.

Unknown keys are ignored, so a newer client can send optional fields an older
server does not know (forward compatibility, as in most binary protocols).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from minibroker.errors import BadRequest
from minibroker.protocol.frame_class import fields, is_frame_class

T = TypeVar("T")

#: A checker takes the raw decoded value and the field path, returns the clean value.
Checker = Callable[[object, str], Any]

#: Integers on the wire must fit in a signed 64-bit value (msgpack's own range).
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


def _type_name(value: object) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, bytes | bytearray):
        return "bin"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def _fail(path: str, expected: str, value: object) -> BadRequest:
    return BadRequest(f"field {path!r} must be {expected}, got {_type_name(value)}")


def _check_str(value: object, path: str) -> str:
    if type(value) is str:
        return value
    raise _fail(path, "a string", value)


def _check_bytes(value: object, path: str) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    # Text bodies are accepted for convenience of clients in languages that
    # blur the two; they are stored as their UTF-8 bytes.
    if type(value) is str:
        return value.encode()
    raise _fail(path, "binary", value)


def _check_int(value: object, path: str) -> int:
    if type(value) is int:
        return value
    raise _fail(path, "an integer", value)


def _check_float(value: object, path: str) -> float:
    if type(value) is float or type(value) is int:
        return float(value)
    raise _fail(path, "a number", value)


def _check_bool(value: object, path: str) -> bool:
    if type(value) is bool:
        return value
    raise _fail(path, "a boolean", value)


def _check_any(value: object, path: str) -> object:
    return value


def _optional(inner: Checker) -> Checker:
    def check(value: object, path: str) -> object:
        return None if value is None else inner(value, path)

    return check


def _list_of(inner: Checker, exact: type | None) -> Checker:
    """Check every item; batches are long, so the happy path does no per-item extras.

    Items of one exact scalar type (a list of delivery ids) pass without a
    call per item. Otherwise each item is checked without building its
    "messages[7]" path; only when something fails is the list walked again
    with paths, to name the first bad item precisely.
    """

    def check(value: object, path: str) -> list[object]:
        if type(value) is not list:
            raise _fail(path, "an array", value)
        if exact is not None:
            for item in value:
                if type(item) is not exact:
                    break
            else:
                return value
        try:
            return [inner(item, path) for item in value]
        except BadRequest:
            for i, item in enumerate(value):
                inner(item, f"{path}[{i}]")
            raise

    return check


def _str_map(value: object, path: str) -> dict[str, str]:
    if type(value) is not dict:
        raise _fail(path, "a map of string to string", value)
    for k, v in value.items():
        if type(k) is not str or type(v) is not str:
            raise BadRequest(f"field {path!r} must map strings to strings")
    return value


def _literal(options: tuple[object, ...]) -> Checker:
    def check(value: object, path: str) -> object:
        if value in options and type(value) in {type(o) for o in options}:
            return value
        allowed = ", ".join(repr(o) for o in options)
        raise BadRequest(f"field {path!r} must be one of {allowed}, got {value!r}")

    return check


def _union(checkers: list[tuple[type, Checker]], label: str) -> Checker:
    def check(value: object, path: str) -> object:
        kind = type(value)
        for py_type, checker in checkers:
            # The same conversions as outside a union: an int is a number,
            # and text is accepted (as UTF-8) where binary is expected.
            if (
                kind is py_type
                or (py_type is float and kind is int)
                or (py_type is bytes and kind is str)
            ):
                return checker(value, path)
        raise _fail(path, label, value)

    return check


_SIMPLE: dict[object, tuple[Checker, str]] = {
    str: (_check_str, "a string"),
    bytes: (_check_bytes, "binary"),
    int: (_check_int, "an integer"),
    float: (_check_float, "a number"),
    bool: (_check_bool, "a boolean"),
    object: (_check_any, "any value"),
}


def checker_for(annotation: object) -> Checker:
    """Compile a checker for one annotation (recursing into containers)."""
    if annotation in _SIMPLE:
        return _SIMPLE[annotation][0]
    if annotation is Any:
        return _check_any
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        inner: Checker
        if len(non_none) == 1:
            inner = checker_for(non_none[0])
        else:
            inner = _union(
                [(_wire_type(a), checker_for(a)) for a in non_none],
                " or ".join(_wire_label(a) for a in non_none),
            )
        return _optional(inner) if type(None) in args else inner
    if origin is list:
        return _list_of(checker_for(args[0]), _exact_type(args[0]))
    if origin is dict:
        if args != (str, str):
            raise TypeError(f"only dict[str, str] maps are supported, not {annotation}")
        return _str_map
    if origin is Literal:
        return _literal(args)
    if is_frame_class(annotation):
        assert isinstance(annotation, type)
        nested: Callable[[dict[Any, Any], str], object] = compile_decoder(annotation)

        def check_nested(value: object, path: str) -> object:
            if type(value) is not dict:
                raise _fail(path, "a map", value)
            # Inner fields are named "messages[0].body", not "messages[0]body".
            return nested(value, path + ".")

        return check_nested
    raise TypeError(f"unsupported annotation in a frame: {annotation!r}")


def _wire_type(annotation: object) -> type:
    """The msgpack-decoded type of a union member: a nested frame arrives as a map."""
    if is_frame_class(annotation):
        return dict
    assert isinstance(annotation, type)
    return annotation


def _wire_label(annotation: object) -> str:
    if is_frame_class(annotation):
        return "a map"
    return _SIMPLE[annotation][1]


def compile_decoder(cls: type[T]) -> Callable[[dict[Any, Any], str], T]:
    """Build ``decode(map, path) -> cls`` from the frame class's annotations.

    Fields without a default are required; ``op`` is never read from the map
    (the registry already used it to pick the class).

    Like ``dataclasses`` itself, this writes the decoder's source and
    compiles it: one straight line of checks per field, no loop and no
    intermediate dict. A message batch runs this once per message, so the
    difference (about 2x over a generic loop) is the difference users see.
    For ``Put`` the generated code reads, in part::

        def decode(raw, path=""):
            get = raw.get
            v0 = get('id')
            if v0 is None:
                raise _missing(path, 'id')
            if type(v0) is not _exact0:
                v0 = _check0(v0, path + 'id')
            ...
            return _cls(v0, v1, v2)
    """
    hints = typing.get_type_hints(cls)
    namespace: dict[str, Any] = {"_cls": cls, "_missing": _missing, "_BadRequest": BadRequest}
    lines = ["def decode(raw, path=''):", "    get = raw.get"]
    arguments = []
    for i, field in enumerate(fields(cls)):
        annotation = hints[field.name]
        namespace[f"_check{i}"] = checker_for(annotation)
        namespace[f"_exact{i}"] = _exact_type(annotation)
        lines.append(f"    v{i} = get({field.name!r})")
        if not field.required:
            namespace[f"_default{i}"] = field.default
            lines.append(f"    if v{i} is None:")
            lines.append(f"        v{i} = _default{i}")
        elif _admits_nil(annotation):
            # Required but nil is a value (``ok``'s ``result``): always
            # written, and nil stays nil.
            lines.append(f"    if v{i} is None:")
            lines.append("        pass")
        else:
            lines.append(f"    if v{i} is None:")
            lines.append(f"        raise _missing(path, {field.name!r})")
        item = _frame_items(annotation)
        if item is not None:
            # A batch (``messages: list[MessageIn]``): each item decoded inline,
            # one call per item; anything wrong goes through the full checker
            # again, which names the bad item precisely.
            namespace[f"_item{i}"] = compile_decoder(item)
            lines.append(f"    elif type(v{i}) is list:")
            lines.append("        try:")
            lines.append(f"            v{i} = [_item{i}(x, '') for x in v{i}]")
            lines.append("        except (_BadRequest, AttributeError):")
            lines.append(f"            v{i} = _check{i}(v{i}, path + {field.name!r})")
            lines.append("    else:")
            lines.append(f"        v{i} = _check{i}(v{i}, path + {field.name!r})")
        elif annotation is not Any and annotation is not object:
            # The common case (the value already has the exact type) costs one
            # comparison; anything else goes through the full checker.
            lines.append(f"    elif type(v{i}) is not _exact{i}:")
            lines.append(f"        v{i} = _check{i}(v{i}, path + {field.name!r})")
        arguments.append(f"{field.name}=v{i}")
    lines.append(f"    return _cls({', '.join(arguments)})")
    exec("\n".join(lines), namespace)
    decode: Callable[[dict[Any, Any], str], T] = namespace["decode"]
    decode.__qualname__ = f"decode_{cls.__name__}"
    return decode


def _frame_items(annotation: object) -> type | None:
    """``X`` for a ``list[X]`` of frame classes (a batch), else None."""
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        if is_frame_class(item):
            assert isinstance(item, type)
            return item
    return None


def _admits_nil(annotation: object) -> bool:
    if annotation is Any:
        return True
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def _missing(path: str, name: str) -> BadRequest:
    return BadRequest(f"missing required field {path + name!r}")


def _exact_type(annotation: object) -> type | None:
    """The one Python type a value may have to skip its checker, if there is one."""
    if get_origin(annotation) in (Union, types.UnionType):
        non_none = [a for a in get_args(annotation) if a is not type(None)]
        if len(non_none) != 1:
            return None
        annotation = non_none[0]
    if annotation in (str, int, bool, float, bytes):
        return annotation
    return None


def to_wire(value: object) -> object:
    """Convert a frame (or a part of one) to plain msgpack-ready values.

    Optional fields equal to ``None`` are left out: absent and nil mean the
    same thing on the wire, and leaving them out keeps frames small. A
    required field is always written, nil included (``ok``'s ``result``).
    """
    if is_frame_class(type(value)):
        out: dict[str, object] = {}
        for field in fields(value):
            item = getattr(value, field.name)
            if item is not None or field.required:
                out[field.name] = to_wire(item)
        return out
    if type(value) is list or type(value) is tuple:
        return [to_wire(v) for v in value]
    return value
