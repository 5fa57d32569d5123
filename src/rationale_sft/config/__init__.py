"""Typed configuration: frozen dataclasses, YAML in, dotted ``key=value`` overrides, strict validation.

Every config section is a frozen dataclass whose fields carry their default and a docstring (the string
literal right after the field), which doubles as help text. This module holds only the machinery; the
sections live beside it, one module per concern. One rule holds for every section: a field named
``seed``, ``*_seed`` or ``seeds`` holds seeds, which must be >= 0.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Opt:
...     lr: float = 1e-3
...     "Learning rate."
...     steps: int = 10
...     "Optimizer steps."
>>> build(Opt, {"lr": 0.5}, ["steps=3"])
Opt(lr=0.5, steps=3)
>>> build(Opt, {"lrr": 0.5})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: unknown key 'lrr' (did you mean 'lr'?); valid keys: lr, steps
>>> build(Opt, {}, ["steps=many"])
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: 'steps' must be int, got str 'many'
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import hashlib
import inspect
import json
import textwrap
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from rationale_sft.errors import InputError

T = TypeVar("T")


class ConfigError(InputError):
    """A configuration problem a user can fix; the message names the key and what is allowed."""


def build(cls: type[T], data: dict | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Build a ``cls`` instance from a plain dict plus dotted overrides, reporting every problem at once."""
    merged = apply_overrides(data or {}, overrides)
    errors: list[str] = []
    obj = _convert(cls, merged, "", errors)
    if errors:
        raise ConfigError("; ".join(errors) if len(errors) == 1 else "\n  " + "\n  ".join(errors))
    return obj


def load(cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Load ``cls`` from a YAML file (or nothing: defaults) and apply ``key=value`` overrides."""
    return build(cls, read_yaml(path) if path else {}, overrides)


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping safely (no code execution); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Return a copy of ``data`` with each ``a.b.c=value`` applied; values are parsed as YAML scalars.

    >>> apply_overrides({"a": {"b": 1}}, ["a.b=2", "a.c=[1, 2]", "d=x"])
    {'a': {'b': 2, 'c': [1, 2]}, 'd': 'x'}
    >>> apply_overrides({}, ["novalue"])
    Traceback (most recent call last):
    ...
    rationale_sft.config.ConfigError: override 'novalue' must look like key=value (e.g. train.lr=1e-4)
    """
    out = json.loads(json.dumps(data, default=str)) if data else {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.lr=1e-4)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def to_dict(obj: Any) -> Any:
    """Plain, JSON/YAML-serialisable form of a config (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_yaml(obj: Any) -> str:
    """Resolved config as YAML text (stable key order: declaration order)."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=False)


def config_hash(obj: Any, length: int = 12) -> str:
    """Content hash of a resolved config: the run id of everything computed from it.

    >>> config_hash({"a": 1}) == config_hash({"a": 1}) != config_hash({"a": 2})
    True
    """
    canon = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:length]


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass (the string literal after each field): the help texts."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant):
                docs[node.target.id] = str(nxt.value.value).strip()
    return docs


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every leaf field of a config class, for ``--help`` listings."""
    rows = []
    docs = field_docs(cls)
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            rows += describe(typ, key + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        rows.append((key, repr(to_dict(default)), docs.get(f.name, "")))
    return rows


# --------------------------------------------------------------------------------------------- internals
def _convert(typ: Any, value: Any, key: str, errors: list[str]) -> Any:
    if dataclasses.is_dataclass(typ):
        return _convert_dataclass(typ, value, key, errors)
    origin, args = get_origin(typ), get_args(typ)
    if typ is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(args, value, key, errors)
    if origin is Literal:
        if value not in args:
            errors.append(f"{_name(key)} must be one of {', '.join(map(repr, args))}, got {value!r}"
                          + _suggest(str(value), [str(a) for a in args]))
        return value
    if origin in (tuple, list):
        return _convert_sequence(typ, origin, args, value, key, errors)
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{_name(key)} must be a mapping, got {type(value).__name__} {value!r}")
            return {}
        return {k: _convert(args[1], v, f"{key}.{k}", errors) for k, v in value.items()}
    return _convert_scalar(typ, value, key, errors)


def _convert_dataclass(cls: type, value: Any, key: str, errors: list[str]) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        errors.append(f"{_name(key)} must be a mapping of keys, got {type(value).__name__} {value!r}")
        return None
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for unknown in sorted(set(value) - set(names)):
        errors.append(f"unknown key {_join(key, unknown)!r}{_suggest(str(unknown), names)}; "
                      f"valid keys: {', '.join(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in value:
            kwargs[f.name] = _convert(hints[f.name], value[f.name], _join(key, f.name), errors)
            _check_seeds(f.name, kwargs[f.name], _join(key, f.name), errors)
        elif dataclasses.is_dataclass(hints[f.name]) and f.default is dataclasses.MISSING \
                and f.default_factory is dataclasses.MISSING:
            kwargs[f.name] = _convert(hints[f.name], {}, _join(key, f.name), errors)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"missing required key {_join(key, f.name)!r}")
    if errors:
        return None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # __post_init__ checks raise ValueError with a message
        errors.append(f"{_name(key)}: {exc}")
        return None


def _convert_union(args: tuple, value: Any, key: str, errors: list[str]) -> Any:
    if value is None and type(None) in args:
        return None
    for arg in (a for a in args if a is not type(None)):
        trial: list[str] = []
        out = _convert(arg, value, key, trial)
        if not trial:
            return out
    names = " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a)) for a in args)
    errors.append(f"{_name(key)} must be {names}, got {type(value).__name__} {value!r}")
    return None


def _convert_sequence(typ: Any, origin: type, args: tuple, value: Any, key: str, errors: list[str]) -> Any:
    if not isinstance(value, (list, tuple)):
        errors.append(f"{_name(key)} must be a list, got {type(value).__name__} {value!r}")
        return None
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            errors.append(f"{_name(key)} must have {len(args)} items, got {len(value)}")
            return None
        items = [_convert(a, v, f"{key}[{i}]", errors) for i, (a, v) in enumerate(zip(args, value))]
    else:
        item_t = args[0] if args else Any
        items = [_convert(item_t, v, f"{key}[{i}]", errors) for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _convert_scalar(typ: Any, value: Any, key: str, errors: list[str]) -> Any:
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" as a string
            return float(value)
        except ValueError:
            pass
    if typ is Path and isinstance(value, str):
        return Path(value)
    if isinstance(typ, type) and isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    errors.append(f"{_name(key)} must be {getattr(typ, '__name__', typ)}, got {type(value).__name__} {value!r}")
    return None


def _check_seeds(name: str, value: Any, key: str, errors: list[str]) -> None:
    """Fields named ``seed``, ``*_seed`` or ``seeds`` hold seeds: numpy refuses negative ones at job time."""
    if name == "seeds" and isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_seeds("seed", v, f"{key}[{i}]", errors)
    elif (name == "seed" or name.endswith("_seed")) and isinstance(value, int) and value < 0:
        errors.append(f"{_name(key)} must be a seed >= 0, got {value}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _name(key: str) -> str:
    return repr(key) if key else "config"


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


__all__ = ["ConfigError", "build", "load", "read_yaml", "apply_overrides", "to_dict", "to_yaml",
           "config_hash", "field_docs", "describe"]
