"""Config helpers: frozen dataclasses, parsed once at the entry point, saved with outputs.

Each stage defines its own frozen, keyword-only dataclasses with a docstring
per field (attribute docstrings). This module turns them to and from plain
dicts and writes the resolved config next to a job's outputs.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

from avfleet.core.errors import ConfigError

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any], *, path: str = "") -> T:
    """Build `cls` from a dict, rejecting unknown keys with the field's full name."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{path}{sorted(unknown)[0]}", "unknown field")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{path}{name}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(path.rstrip(".") or cls.__name__, str(e)) from e


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value, path=path + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        non_none = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(non_none[0], value, path) if len(non_none) == 1 else value
    if origin in (tuple,) and isinstance(value, list):
        return tuple(value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def dumps(config: Any) -> str:
    return json.dumps(to_dict(config), indent=2, sort_keys=True, default=str)


def replace(config: T, **changes: Any) -> T:
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]
