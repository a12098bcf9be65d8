"""Writes ``banger/api/shapes.py``: the wire models as plain dataclasses, for clients.

``banger.api.models`` (pydantic) is the one definition of every wire shape:
the daemon validates with it, FastAPI documents it, the store persists it.
A CLI run, though, would spend more importing pydantic than on everything
else it does (measured: see the README's design section), and it only reads
answers the daemon has already validated. So the shapes are derived from
the models, as typed plain classes with ``from_json``/``to_json`` and nothing
to import beyond the standard library (not even ``dataclasses``, whose
decorator cost more at import than the rest of the file). A unit test regenerates the file and
fails when it differs from the committed one.

    python -m banger.api.gen_shapes > src/banger/api/shapes.py
"""

from __future__ import annotations

import enum
import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from banger.api import models

_HEADER = '''"""The wire models as plain classes, for clients: generated, do not edit.

Made by ``python -m banger.api.gen_shapes`` from ``banger.api.models``, the
one definition of each shape. Importing this costs next to nothing (no
pydantic, not even dataclasses); the daemon has validated with the pydantic
models everything a client reads.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

R = TypeVar("R")


def _opt(f: Callable[[Any], R]) -> Callable[[Any], R | None]:
    return lambda v: None if v is None else f(v)


def _list(f: Callable[[Any], R]) -> Callable[[Any], list[R]]:
    return lambda v: [f(i) for i in v]


def _dict(f: Callable[[Any], R]) -> Callable[[Any], dict[str, R]]:
    return lambda v: {k: f(i) for k, i in v.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    to_json = getattr(value, "to_json", None)
    return to_json() if to_json is not None else value


class _Shape:
    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        """The shape as JSON-ready data, as the daemon sends it."""
        return {name: _plain(getattr(self, name)) for name in self._fields}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Shape) or type(other) is not type(self):
            return NotImplemented
        return self.to_json() == other.to_json()

    # Equal by value and mutable, as a dataclass: not hashable.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"
'''


def _lit(value: Any) -> str:
    """A literal as ruff's formatter writes it (double-quoted strings); an enum by member."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def _args(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp)


def _is_union(tp: Any) -> bool:
    return isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union


def type_text(tp: Any) -> str:
    """The annotation for ``tp`` as source text."""
    if tp is type(None):
        return "None"
    if tp is Any:
        return "Any"
    if _is_union(tp):
        return " | ".join(type_text(a) for a in _args(tp))
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        # The daemon checks the value; a client reads and sends the string.
        return "str"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_text(a) for a in _args(tp))}]"
    return str(tp.__name__)


def decoder(tp: Any) -> str | None:
    """Source text of a function turning JSON data into ``tp``; None where it is the data."""
    if _is_model(tp):
        return f"{tp.__name__}.from_json"
    if _is_enum(tp):
        return str(tp.__name__)
    if _is_union(tp):
        rest = [a for a in _args(tp) if a is not type(None)]
        inner = decoder(rest[0]) if len(rest) == 1 else None
        return f"_opt({inner})" if inner else None
    origin = typing.get_origin(tp)
    if origin is list:
        inner = decoder(_args(tp)[0])
        return f"_list({inner})" if inner else None
    if origin is dict:
        inner = decoder(_args(tp)[1])
        return f"_dict({inner})" if inner else None
    return None


def _field_lines(model: type[BaseModel]) -> tuple[list[str], list[str], list[str], list[str]]:
    """Per field: its annotation, its __init__ parameter, its assignment, its decoding."""
    declared, params, assigned, decoded = [], [], [], []
    for name, info in model.model_fields.items():
        annotation = type_text(info.annotation)
        declared.append(f"    {name}: {annotation}")
        if info.default_factory is not None:
            factory = info.default_factory.__name__
            params.append(f"{name}: {annotation} | None = None")
            assigned.append(f"        self.{name} = {factory}() if {name} is None else {name}")
            raw = f"d.get({_lit(name)}, {factory}())"
        else:
            if info.default is PydanticUndefined:
                params.append(f"{name}: {annotation}")
                raw = f"d[{_lit(name)}]"
            elif info.default is None:
                params.append(f"{name}: {annotation} = None")
                raw = f"d.get({_lit(name)})"
            else:
                params.append(f"{name}: {annotation} = {_lit(info.default)}")
                raw = f"d.get({_lit(name)}, {_lit(info.default)})"
            assigned.append(f"        self.{name} = {name}")
        fn = decoder(info.annotation)
        decoded.append(f"            {name}={fn}({raw})," if fn else f"            {name}={raw},")
    return declared, params, assigned, decoded


def _tuple_lines(names: list[str]) -> list[str]:
    if len(names) == 1:
        return [f"    _fields = ({_lit(names[0])},)"]
    return ["    _fields = (", *(f"        {_lit(n)}," for n in names), "    )"]


def render_model(model: type[BaseModel]) -> str:
    declared, params, assigned, decoded = _field_lines(model)
    doc = (model.__doc__ or "").strip().splitlines()
    lines = [f"class {model.__name__}(_Shape):"]
    if doc:
        lines += [f'    """{doc[0]}"""', ""]
    lines += [
        # Exploded, with trailing commas: the layout ruff's formatter keeps.
        *_tuple_lines(list(model.model_fields)),
        "    __slots__ = _fields",
        *declared,
        "",
        "    def __init__(",
        "        self,",
        "        *,",
        *(f"        {p}," for p in params),
        "    ) -> None:",
        *assigned,
        "",
        "    @classmethod",
        f"    def from_json(cls, d: dict[str, Any]) -> {model.__name__}:",
        "        return cls(",
        *decoded,
        "        )",
    ]
    return "\n".join(lines)


def render_enum(kind: type[enum.Enum]) -> str:
    members = [f"    {m.name} = {_lit(m.value)}" for m in kind]
    return "\n".join([f"class {kind.__name__}(StrEnum):", *members])


def wire_types() -> tuple[list[type[enum.Enum]], list[type[BaseModel]]]:
    enums, shapes = [], []
    for value in vars(models).values():
        if getattr(value, "__module__", None) != models.__name__ or not isinstance(value, type):
            continue
        if _is_enum(value):
            enums.append(value)
        elif _is_model(value) and value is not models.BaseModel:
            shapes.append(value)
    return enums, shapes


def render() -> str:
    models.build_all()
    enums, shapes = wire_types()
    parts = [_HEADER.rstrip()]
    parts += [render_enum(e) for e in enums]
    parts += [render_model(m) for m in shapes]
    return "\n\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render(), end="")
