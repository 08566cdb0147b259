"""Validation of dataset constructor arguments, with errors that name the option key.

A dataset does not know where its options came from, so its errors name the bare argument
(`dataroot_gt: ...`). `datasets.build_dataset` knows the phase and re-raises them with the full
key path (`datasets.train.dataroot_gt: ...`), which is what the user sees in a YAML file.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vsr_accel.core.checks import is_int
from vsr_accel.core.errors import ConfigError, DataError

IO_BACKENDS = ("disk", "lmdb", "raw")


class OptionValueError(ConfigError):
    """An option value is invalid; `key` is the argument name, relative to the dataset section."""

    def __init__(self, key: str, detail: str):
        self.key, self.detail = key, detail
        super().__init__(f"{key}: {detail}")

    def with_prefix(self, prefix: str) -> "OptionValueError":
        return type(self)(f"{prefix}.{self.key}", self.detail)


class OptionPathError(DataError):
    """A path given by an option is missing or is not what the option needs."""

    def __init__(self, key: str, detail: str):
        self.key, self.detail = key, detail
        super().__init__(f"{key}: {detail}")

    def with_prefix(self, prefix: str) -> "OptionPathError":
        return type(self)(f"{prefix}.{self.key}", self.detail)


def positive_int(key: str, value: Any) -> int:
    if not is_int(value) or value <= 0:
        raise OptionValueError(key, f"must be a positive integer, got {value!r}")
    return value


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionValueError(key, f"must be true or false, got {value!r}")
    return value


def positive_int_list(key: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise OptionValueError(key, f"must be a non-empty list of positive integers, got {value!r}")
    return tuple(positive_int(f"{key}[{i}]", v) for i, v in enumerate(value))


def choice(key: str, value: Any, allowed: Sequence[Any]) -> Any:
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise OptionValueError(key, f"{value!r} is not one of {shown}")
    return value


def file_extension(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value or "/" in value:
        raise OptionValueError(key, f"must be a file extension such as 'png', got {value!r}")
    return value.lstrip(".")


def filename_template(key: str, value: Any) -> str:
    """A `format()` spec for frame numbers, e.g. '08d' -> 00000012 (BasicSR's filename_tmpl)."""
    try:
        format(0, value)
    except (TypeError, ValueError):
        raise OptionValueError(key, f"{value!r} is not a format spec for frame numbers (e.g. '08d')") from None
    return value


def io_backend_type(value: Any) -> str:
    """Accept our `io_backend: lmdb` and BasicSR's `io_backend: {type: lmdb}`."""
    if isinstance(value, Mapping):
        extra = sorted(set(value) - {"type"})
        if extra:
            raise OptionValueError(f"io_backend.{extra[0]}", "unsupported io_backend option (only 'type' is read)")
        if "type" not in value:
            raise OptionValueError("io_backend.type", "missing (one of 'disk', 'lmdb', 'raw')")
        return choice("io_backend.type", value["type"], IO_BACKENDS)
    return choice("io_backend", value, IO_BACKENDS)


def existing_dir(key: str, value: Any) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise OptionValueError(key, f"must be a folder path, got {value!r}")
    path = Path(value).expanduser()
    if not path.exists():
        raise OptionPathError(key, f"{path} does not exist")
    if not path.is_dir():
        raise OptionPathError(key, f"{path} is not a folder")
    return path


def existing_file(key: str, value: Any) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise OptionValueError(key, f"must be a file path, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_file():
        raise OptionPathError(key, f"{path} does not exist or is not a file")
    return path


def spread(items: Sequence[Any], count: int = 8) -> list[Any]:
    """Up to `count` evenly spaced items, first and last included: start-up checks look at a
    few entries of a meta-info list instead of stat-ing tens of thousands of files."""
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]
