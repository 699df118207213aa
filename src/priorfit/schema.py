"""Building config dataclasses from untrusted dicts (TOML files, model cards)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


def dataclass_from_dict(cls: type, data: dict[str, Any], table: str) -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ValueError(f"[{table}] must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            raise ValueError(
                f"unknown key {key!r} in [{table}]; allowed keys: {', '.join(sorted(fields))}"
            )
        if not _has_type(value, hints[key]):
            raise ValueError(
                f"[{table}] {key} must be {_type_name(hints[key])}, got {value!r} "
                f"({type(value).__name__})"
            )
    return cls(**{k: float(v) if hints[k] is float else v for k, v in data.items()})


def _has_type(value: Any, hint: Any) -> bool:
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_has_type(value, h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_has_type(v, item) for v in value)
    return True


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)
