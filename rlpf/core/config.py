"""Configs: typed dataclasses (a type, a default and a docstring per field), read with draccus.

A config comes from a YAML file (optional) and ``key=value`` overrides at any depth, merged into one
nested mapping and decoded by draccus (LeRobot's dataclass-config library) into the declared types:
``grpo.temperature=7e-1`` is the float 0.7; ``lm_steps=2.5`` (an int field), ``lm.layers=true`` or
``weights=abc`` are errors. Every error is a ``ConfigError`` naming the field as a dotted path, the
expected type and the value. Each dataclass checks ranges in ``__post_init__`` (raising
``ConfigError`` through ``check``), so a config built in Python is held to the same rules.

Dict-typed fields take their keys whole: ``weights.mypkg.rewards:smooth=-1`` sets the key
``mypkg.rewards:smooth`` (the path is split on dots only down to the dict field). A value is YAML:
``weights={a: 1}`` replaces the whole dict, ``weights.a=1`` sets one entry on top of the file's or
the default dict; a file may use the same dotted keys (``lm.layers: 2``). The field docstrings,
read by draccus, are the ``--help`` text (``describe``).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import textwrap
import typing
from typing import Any, Sequence, TypeVar

import draccus
import yaml
from draccus.utils import DecodingError, ParsingError
from draccus.wrappers.docstring import HelpOrder, get_attribute_docstring, get_preferred_help_text

from rlpf.core.errors import RLPFError

C = TypeVar("C")


class ConfigError(RLPFError, ValueError):
    """A config that cannot be used: unreadable file, unknown field, a value of the wrong type or range.

    ``field`` is the dotted path of the field at fault, relative to ``owner`` (the dataclass whose
    validation raised it) until ``load_config`` prefixes the section's path (``lm`` + ``layers``).
    """

    def __init__(self, message: str, field: str | None = None, owner: type | None = None, rooted: bool = False):
        self.field, self.message, self.owner, self.rooted = field, message, owner, rooted
        super().__init__(f"{field}: {message}" if field else message)

    def within(self, prefix: Sequence[str]) -> "ConfigError":
        """The same error for the field as seen from the top-level config (``rooted``: path complete)."""
        if self.rooted:
            return self
        field = ".".join([*prefix, *([self.field] if self.field else [])])
        return ConfigError(self.message, field or None, rooted=True)


def check(owner: Any, ok: bool, field: str, value: Any, what: str) -> None:
    """In ``owner.__post_init__``: raise ConfigError for ``field`` unless ``ok`` ('<field>: must be <what>, got <value>')."""
    if not ok:
        raise ConfigError(f"must be {what}, got {value!r}", field, type(owner))


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_weights(owner: Any, weights: dict) -> None:
    """A reward config's ``weights``: a non-empty mapping of reward term -> finite weight."""
    check(owner, bool(weights), "weights", weights, "a non-empty mapping of reward term -> weight")
    for name, w in weights.items():
        check(owner, finite(w), f"weights.{name}", w, "a finite number")


# ---------------------------------------------------------------------------------------------------
# strict scalars: draccus' own decoders take true for an int (int(True) == 1), 2 for a str and None
# for any field; registered with include_subclasses so draccus calls them directly (its wrapper for
# the others lets None through). Optional fields (``int | None``) still take null via draccus' unions.


def _expected(kind: str, raw: Any, path: Sequence[str]) -> DecodingError:
    return DecodingError(tuple(path), f"expected {kind}, got {raw!r}")


def _decode_int(cls, raw: Any, path: Sequence[str]) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"[+-]?[0-9][0-9_]*", raw.strip()):
        return int(raw)
    raise _expected("int", raw, path)


def _decode_float(cls, raw: Any, path: Sequence[str]) -> float:
    value = None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str):  # YAML 1.1 reads 7e-1 (no dot) as a string
        try:
            value = float(raw)
        except ValueError:
            pass
    if value is None:
        raise _expected("float", raw, path)
    if not math.isfinite(value):
        raise DecodingError(tuple(path), f"expected a finite float, got {raw!r}")
    return value


def _decode_str(cls, raw: Any, path: Sequence[str]) -> str:
    if isinstance(raw, str):
        return raw
    raise _expected("str", raw, path)


def _decode_bool(cls, raw: Any, path: Sequence[str]) -> bool:
    if isinstance(raw, bool):
        return raw
    raise _expected("bool (true or false)", raw, path)


def _decode_tuple(cls, raw: Any, path: Sequence[str]) -> tuple:
    from draccus.parsers.decoding import decode_tuple

    if not isinstance(raw, (list, tuple)):  # draccus would take a string as its characters
        raise _expected(type_name(cls), raw, path)
    return decode_tuple(*typing.get_args(cls))(raw, path)


for _t, _fn in ((int, _decode_int), (float, _decode_float), (str, _decode_str), (bool, _decode_bool),
                (tuple, _decode_tuple)):
    draccus.decode.register(_t, _fn, include_subclasses=True)


def register_decoder(cls: type, fn) -> None:
    """Decode ``cls`` with ``fn(raw, path)`` (e.g. a shorthand string for a section; ``decode_section``
    for the mapping); raise ConfigError or draccus' DecodingError for a bad value."""

    def decode(_cls, raw, path):
        try:
            return fn(raw, path)
        except ConfigError as e:
            raise e.within(tuple(path)) from None
        except ParsingError as e:
            cause = _config_cause(e)
            if cause is None:
                raise
            raise cause.within(tuple(path)) from None

    draccus.decode.register(cls, decode, include_subclasses=True)


def _config_cause(e: BaseException) -> ConfigError | None:
    cause: BaseException | None = e
    while cause is not None and not isinstance(cause, ConfigError):
        cause = cause.__cause__ or cause.__context__
    return cause


def decode_section(cls: type[C], raw: Any, path: Sequence[str]) -> C:
    """draccus' own decoding of the dataclass ``cls`` (for a ``register_decoder`` function)."""
    from draccus.parsers.decoding import decode_dataclass

    if not isinstance(raw, dict):
        raise _expected(f"a mapping of {cls.__name__} fields", raw, path)
    return decode_dataclass(cls, raw, tuple(path))


# ---------------------------------------------------------------------------------------------------
# loading


def load_config(cls: type[C], path: str | None = None, overrides: Sequence[str] = ()) -> C:
    """Build ``cls`` from a YAML file (optional) and ``key=value`` overrides; ConfigError on any problem."""
    raw: dict = read_yaml(path) if path else {}
    fields = _fields(cls)
    for key in [k for k in raw if isinstance(k, str) and "." in k and k not in fields]:
        _set(cls, raw, key.split("."), raw.pop(key), f"key {key!r} in config {path}")  # `lm.layers: 2`, as on the command line
    origin: dict[tuple, str] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML: {e}") from None
        origin[_set(cls, raw, key.split("."), value, f"override {item!r}", text)] = item
    return decode_config(cls, raw, source=path, origin=origin)


def read_yaml(path: str) -> dict:
    """The mapping in a YAML config file (safe_load: a config file never constructs Python objects)."""
    try:
        with open(path) as f:
            loaded = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"config {path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path}: invalid YAML: {e}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config {path}: expected a mapping of fields, got {type(loaded).__name__}")
    return loaded


def decode_config(cls: type[C], raw: dict, source: str | None = None, origin: dict | None = None) -> C:
    """draccus' decoding of the nested mapping ``raw`` into ``cls``, its errors as ConfigError."""
    try:
        return draccus.decode(cls, raw)
    except (DecodingError, ParsingError) as e:
        raise _located(_explain(cls, raw, e), source, origin) from None


def _set(cls: type, raw: dict, parts: list[str], value: Any, item: str, text: str | None = None) -> tuple:
    """Put one override (``item`` says which, for errors) into ``raw``, walking ``cls``' fields;
    returns the path it set. ``text``: the
    value as typed on the command line, kept as it is for a str field (``data=2024-01-01`` is that
    directory, not the date YAML would read; ``world=5`` the string '5')."""
    node_type, node, done = cls, raw, []
    while True:
        name = parts[len(done)]
        fields = _fields(node_type)
        if name not in fields:
            raise ConfigError(f"unknown field ({item}); {_valid(node_type)}", ".".join([*done, name]))
        done.append(name)
        kind = fields[name]
        rest = parts[len(done):]
        if not rest:
            if text is not None and kind in (str, str | None) and value is not None and not isinstance(value, str):
                value = text
            node[name] = value
            return tuple(done)
        if dataclasses.is_dataclass(kind):
            if not isinstance(node.get(name), dict):
                node[name] = {}
            node_type, node = kind, node[name]
            continue
        if typing.get_origin(kind) is dict:
            entries = node.get(name)
            if not isinstance(entries, dict):  # entries from the file, else the field's default
                entries = draccus.encode(_default(node_type, name), kind) or {}
                entries = dict(entries) if isinstance(entries, dict) else {}
            node[name] = entries
            value_type = (typing.get_args(kind) or (str, Any))[1]
            if dataclasses.is_dataclass(value_type) and len(rest) > 1:  # name.key.field=...
                entry = entries.get(rest[0])
                entries[rest[0]] = entry if isinstance(entry, dict) else {}
                sub = _set(value_type, entries[rest[0]], rest[1:], value, item, text)
                return (*done, rest[0], *sub)
            key = ".".join(rest)  # the rest is one key: 'mypkg.rewards:smooth'
            entries[key] = value
            return (*done, key)
        raise ConfigError(f"is a {type_name(kind)}, not a section with fields ({item})", ".".join(done))


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(cls) if f.init}


def _valid(cls: type) -> str:
    return f"{cls.__name__} has the fields: {', '.join(_fields(cls))}"


def _default(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _explain(cls: type, raw: dict, e: Exception) -> ConfigError:
    """A ConfigError from draccus' error: the dotted path, what that field expects, and the value."""
    path = tuple(getattr(e, "key_path", ()) or ())
    cause = _config_cause(e)
    if cause is not None:  # a __post_init__ raised it: draccus reports the class, not where it sits
        return cause.within(path or _section_path(cls, cause.owner))
    kind, value, found = _locate(cls, raw, path)
    dotted = ".".join(path) or None
    if dataclasses.is_dataclass(kind) and isinstance(value, dict):
        unknown = [k for k in value if k not in _fields(kind)]
        if unknown:
            where = f"{dotted}." if dotted else ""
            return ConfigError(f"unknown field {', '.join(where + str(k) for k in unknown)}; {_valid(kind)}")
    if isinstance(e, DecodingError) and e.message.startswith("expected"):  # from the strict decoders above
        return ConfigError(e.message, dotted)
    if isinstance(e, ParsingError) and not isinstance(e, DecodingError) and e.__cause__ is not None:
        return ConfigError(str(e.__cause__), dotted)  # a ValueError of a __post_init__: its own message
    got = f", got {value!r}" if found else ""
    return ConfigError(f"expected {type_name(kind) if kind is not None else 'another value'}{got}", dotted)


def _section_path(cls: type, owner: type | None) -> tuple:
    """Where a section of type ``owner`` sits in ``cls`` (the first such field, breadth first)."""
    todo: list[tuple[type, tuple]] = [(cls, ())]
    while todo and owner is not None:
        kind, path = todo.pop(0)
        if kind is owner:
            return path
        todo += [(t, (*path, n)) for n, t in _fields(kind).items() if dataclasses.is_dataclass(t)]
    return ()


def _locate(cls: type, raw: Any, path: tuple) -> tuple[Any, Any, bool]:
    """(declared type, raw value, whether the value exists) at ``path`` below ``cls``."""
    kind: Any = cls
    value, found = raw, True
    for part in path:
        if dataclasses.is_dataclass(kind):
            kind = _fields(kind).get(part)
        elif typing.get_origin(kind) in (dict, list, tuple):
            args = typing.get_args(kind)
            kind = args[-1] if args and args[-1] is not Ellipsis else (args[0] if args else None)
        else:
            kind = None
        if found and isinstance(value, dict) and part in value:
            value = value[part]
        elif found and isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            found = False
    return kind, value, found


def _located(e: ConfigError, source: str | None, origin: dict | None) -> ConfigError:
    """Say where the bad value came from: the override that set it, or the file."""
    for set_path, item in (origin or {}).items():
        key = ".".join(set_path)
        if e.field and (e.field == key or e.field.startswith(key + ".") or key.startswith(e.field + ".")):
            return ConfigError(f"{e.message} (override {item!r})", e.field)  # it set this field or its section
    if source:
        return ConfigError(f"{e.message} (config {source})", e.field)
    return e


# ---------------------------------------------------------------------------------------------------
# saving and --help


def config_dict(cfg: Any) -> dict:
    """The config as plain YAML data (what config.yaml holds and ``load_config`` reads back)."""
    return yaml.safe_load(yaml.safe_dump(draccus.encode(cfg), sort_keys=False))


def save_config(cfg: Any, path: str) -> None:
    """Write ``cfg`` as YAML that ``load_config`` reads back into an equal config."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(config_dict(cfg), f, sort_keys=False)


def type_name(kind: Any) -> str:
    if isinstance(kind, type) and not typing.get_args(kind):
        return kind.__name__
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", str(kind))  # typing.List / rlpf.x.Cls -> Cls


def field_doc(cls: type, name: str) -> str:
    """The docstring under a dataclass field, as draccus reads it (whitespace collapsed)."""
    doc = get_preferred_help_text(get_attribute_docstring(cls, name), preferred_help=HelpOrder.below) or ""
    return " ".join(doc.split())


def describe(cls: type, indent: str = "  ", prefix: str = "", defaults: Any = None) -> str:
    """Every field of a config class with its type, default and docstring (sections as ``outer.field``), for --help.
    ``defaults``: an instance whose values are the defaults shown (a section's, as its parent builds it:
    ``PixelConfig.grpo`` is ``GRPOSettings`` with the pixel run's own defaults, not the class's)."""
    lines = []
    for name, kind in _fields(cls).items():
        doc = field_doc(cls, name)
        default = getattr(defaults, name) if defaults is not None and hasattr(defaults, name) else _default(cls, name)
        if dataclasses.is_dataclass(kind):
            lines.append(f"{indent}{prefix}{name}.*  {doc}")
            lines.append(describe(kind, indent, prefix=f"{prefix}{name}.", defaults=default))
            continue
        shown = draccus.encode(default, kind) if default is not None else None
        lines.append(f"{indent}{prefix}{name} ({type_name(kind)}, default {shown!r})")
        if doc:
            lines.append(textwrap.fill(doc, width=100, initial_indent=indent + "    ", subsequent_indent=indent + "    "))
    return "\n".join(lines)
