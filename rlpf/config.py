"""Configs: dataclasses with a docstring per field, loaded from YAML and overridden as ``key=value``.

Field docstrings (the string literal right after a field) become ``--help`` text via ``describe``.
"""
from __future__ import annotations

from rlpf.errors import RLPFError

import ast
import dataclasses
import inspect
import os
import typing
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


class ConfigError(RLPFError, ValueError):
    pass


def build_nested(cfg: Any, kinds: dict[str, type]) -> None:
    """Turn the nested sections of ``cfg`` given as dicts (from YAML) into their dataclasses, in place.

    ``kinds``: field name -> dataclass. An unknown key in a section is a ValueError naming the section.
    """
    for name, kind in kinds.items():
        value = getattr(cfg, name)
        if isinstance(value, dict):
            try:
                setattr(cfg, name, kind(**value))
            except TypeError as e:
                raise ValueError(f"{name}: {e}") from None


def load_config(cls: type[C], path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> C:
    """Build ``cls`` from a YAML file (optional) and ``key=value`` overrides (``a.b=v`` sets a dict entry)."""
    values: dict[str, Any] = {}
    if path:
        try:
            with open(path) as f:
                loaded = yaml.safe_load(f) or {}
        except OSError as e:
            raise ConfigError(f"config {path}: cannot read: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config {path}: invalid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {path}: expected a mapping of fields, got {type(loaded).__name__}")
        values.update(loaded)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r}: expected key=value")
        name, dot, sub = key.partition(".")
        value = yaml.safe_load(raw) if raw else ""
        if name not in fields:
            raise ConfigError(f"override {item!r}: unknown field {name!r}; fields: {sorted(fields)}")
        if dot:
            base = values.get(name) or _default(fields[name]) or {}
            base = dataclasses.asdict(base) if dataclasses.is_dataclass(base) else dict(base)
            base[sub] = value
            values[name] = base
        else:
            values[name] = value
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"config {path or ''}: unknown fields {sorted(unknown)}; fields: {sorted(fields)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config {path or ''}: {e}") from None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def save_config(cfg: Any, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(dataclasses.asdict(cfg), f, sort_keys=False)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each dataclass field."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(getattr(b, "value", None), ast.Constant):
            docs[a.target.id] = str(b.value.value).strip()  # type: ignore[attr-defined]
    return docs


def describe(cls: type, indent: str = "  ", prefix: str = "") -> str:
    """Fields, defaults and docs of a config class (nested config classes as ``outer.field``), for --help."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        default = _default(f)
        kind = hints.get(f.name)
        if dataclasses.is_dataclass(kind):
            lines.append(f"{indent}{prefix}{f.name}.*  {docs.get(f.name, '')}")
            lines.append(describe(kind, indent, prefix=f"{prefix}{f.name}."))
            continue
        lines.append(f"{indent}{prefix}{f.name} ({getattr(kind, '__name__', kind)}, default {default!r})")
        if f.name in docs:
            lines.append(f"{indent}    {docs[f.name]}")
    return "\n".join(lines)
