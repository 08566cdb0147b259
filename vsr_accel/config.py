"""Typed, validated options from BasicSR-style YAML.

Options files are read with `yaml.safe_load` and turned into frozen dataclasses, so a typo fails
at start-up, not two days into a run. Every error is one line that names the file, the key path
(`train.optim_g.lr`) and, for unknown keys, the closest valid key. Sections whose keys belong to a
component (a network's or a dataset's constructor arguments) stay plain dicts here and are
validated by that component's builder, which knows its own argument names.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Union

import yaml

from vsr_accel.errors import ConfigError


def closest(name: str, candidates: typing.Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_key_message(source: str, key_path: str, valid: typing.Iterable[str]) -> str:
    valid = sorted(valid)
    hint = closest(key_path.rsplit(".", 1)[-1], valid)
    suggestion = f"did you mean '{hint}'? " if hint else ""
    return f"{source}: unknown option '{key_path}' ({suggestion}valid keys here: {', '.join(valid)})"


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: options file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.total_iter=1000` (ours) or `train:total_iter=1000` (BasicSR's --force_yml)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    parts = [p for p in key.replace(":", ".").split(".") if p]
    if not parts:
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):  # YAML 1.1 reads '1e-3' as a string; a number is what users mean
        try:
            value = float(value)
        except ValueError:
            pass
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """Set nested keys; intermediate mappings are created. Validation happens afterwards, so an
    override with a typo is reported like a typo in the file."""
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{'.'.join(parts[:i + 1])}' is not a mapping")
            node = child
        node[parts[-1]] = value
    return data


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, source: str, key: str) -> Any:
    """Check `value` against a field annotation; ints are accepted where floats are expected and
    YAML's '2e-4' string (PyYAML reads it as str) is accepted as a float."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, source, key)
            except ConfigError:
                continue
        raise ConfigError(f"{source}: '{key}' must be {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, key)
    elif origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (list, tuple)):
            args = typing.get_args(tp)
            item_tp = args[0] if args else Any
            return tuple(_coerce(v, item_tp, source, f"{key}[{i}]") for i, v in enumerate(value))
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            return dict(value)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # BasicSR writes `!!float 5e3`
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported option type {tp!r} for {key}")
    raise ConfigError(f"{source}: '{key}' must be {_type_name(tp)}, got {value!r}")


def from_dict(cls: type, data: Any, source: str, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    where = prefix or "top level"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: '{where}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(unknown_key_message(source, path, fields))
        kwargs[key] = _coerce(value, hints[key], source, path)
    missing = [name for name, f in fields.items() if name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        path = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise ConfigError(f"{source}: required option '{path}' is missing")
    return cls(**kwargs)
