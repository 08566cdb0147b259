"""Typed, validated options from BasicSR-style YAML.

Options files are read as UTF-8 with `yaml.safe_load`'s loader (a key given twice is refused)
and turned into frozen dataclasses, so a typo fails at start-up, not two days into a run. Every error is one line that names the file, the key path
(`train.optim_g.lr`) and, for unknown keys, the closest valid key. Sections whose keys belong to a
component (a network's or a dataset's constructor arguments) stay plain dicts here and are
validated by that component's builder, which knows its own argument names.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Union

import yaml

from vsr_accel.core.checks import closest, is_int, is_number
from vsr_accel.core.errors import ConfigError


def unknown_key_message(source: str, key_path: str, valid: typing.Iterable[str]) -> str:
    valid = sorted(valid)
    hint = closest(key_path.rsplit(".", 1)[-1], valid)
    suggestion = f"did you mean '{hint}'? " if hint else ""
    return f"{source}: unknown option '{key_path}' ({suggestion}valid keys here: {', '.join(valid)})"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """An options file as a dict: `yaml.safe_load`'s types (BasicSR's `!!float 5e3` included),
    read as UTF-8 (a UTF-8 byte-order mark is accepted), and a key given twice in one mapping is
    refused: PyYAML would keep the last silently, and BasicSR users edit long files by hand."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not an options file")
    if not path.is_file():
        raise ConfigError(f"{path}: options file not found")
    text = decode_utf8(path.read_bytes(), str(path))
    try:
        data = safe_load_unique(text)
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    return data


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def decode_utf8(raw: bytes, source: str) -> str:
    """UTF-8 text with or without a byte-order mark. Windows editors (and PowerShell's `>`) may
    save UTF-16; that is named rather than shown as a UnicodeDecodeError."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf16 = raw.startswith(UTF16_BOMS) or b"\x00" in raw[:200]
        guess = "saved as UTF-16?" if utf16 else f"byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        raise ConfigError(f"{source}: not UTF-8 text ({guess}); save the options file as UTF-8") from None
    if "\x00" in text:  # ASCII saved as UTF-16 without a byte-order mark decodes, NULs included
        raise ConfigError(f"{source}: not UTF-8 text (NUL bytes: saved as UTF-16?); save the options file as UTF-8")
    return text


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one YAML mapping (the message names the key path and both lines)."""


MERGE_TAG = "tag:yaml.org,2002:merge"


def safe_load_unique(text: str) -> Any:
    """`yaml.safe_load(text)`, refusing a key given twice in one mapping. The document is composed
    into nodes once, checked, then constructed by the same SafeLoader, so every type is
    safe_load's; keys merged in with `<<: *anchor` may be overridden as YAML intends."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        refuse_duplicate_keys(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def refuse_duplicate_keys(node: yaml.Node, prefix: str = "", seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias: already checked where its anchor was defined
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            path = prefix
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != MERGE_TAG:
                key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
                path = f"{prefix}.{key_node.value}" if prefix else key_node.value
                if key in first_line:
                    raise DuplicateKeyError(f"'{path}' is given twice (lines {first_line[key]} and {line}); "
                                            f"YAML would keep only the last one, so delete one of them")
                first_line[key] = line
            refuse_duplicate_keys(value_node, path, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            refuse_duplicate_keys(item, f"{prefix}[{i}]", seen)


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
    override with a typo is reported like a typo in the file.

    `--set <section>=null` (or `~`) removes a section, as BasicSR users switch validation off
    (`--set datasets.val=null`, `--set val=null`): a key whose value is a mapping is deleted, so
    the section is absent, and a required section is then reported missing by name. Any other
    key set to null holds None (`path.pretrain_network_g=~`, a dataset's `val_partition=null`)."""
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
        if value is None and isinstance(node.get(parts[-1]), dict):
            del node[parts[-1]]
        else:
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
        if value is None and type(None) in typing.get_args(tp):  # `val: ~` is no validation, not its defaults
            return None
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
            args = typing.get_args(tp)
            if len(args) == 2:  # dict[str, X]: every value checked as X, named by its key
                return {k: _coerce(v, args[1], source, f"{key}.{k}") for k, v in value.items()}
            return dict(value)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if is_int(value):
            return value
        if isinstance(value, float) and value.is_integer():  # BasicSR writes `!!float 5e3`
            return int(value)
    elif tp is float:
        if is_number(value):
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
