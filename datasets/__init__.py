"""Dataset registry: `build_dataset({"type": "REDSRecurrentDataset", **kwargs}, phase="train")`.

An explicit dict of BasicSR-named datasets; nothing is scanned at import. Option mistakes
(unknown type, misspelt argument, bad value, missing folder) raise one-line ConfigError /
DataError naming the key path, e.g. `datasets.train.dataroot_gt: /data/REDS/train_sharp does
not exist` or `datasets.train.use_flip: unknown option for REDSRecurrentDataset (did you mean
'use_hflip'?)`.

Training datasets are indexed by the batch sampler with an `ItemRequest` `(index, lr_crop,
num_frames, seed)` (see `datasets.training`); test datasets by clip index.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from datasets.checks import OptionPathError, OptionValueError
from datasets.reds import REDSRecurrentDataset
from datasets.training import TrainingClips
from datasets.video_test import Vimeo90KTestDataset, VideoRecurrentTestDataset
from datasets.vimeo import Vimeo90KRecurrentDataset
from vsr_accel.core.checks import closest
from vsr_accel.core.errors import ConfigError

__all__ = ["build_dataset", "check_dataset_spec", "DATASETS", "REDSRecurrentDataset", "Vimeo90KRecurrentDataset",
           "VideoRecurrentTestDataset", "Vimeo90KTestDataset", "is_training_dataset"]


@dataclass(frozen=True)
class DatasetEntry:
    cls: type[Dataset]
    defaults: Mapping[str, Any] = field(default_factory=dict)


DATASETS: dict[str, DatasetEntry] = {
    "REDSRecurrentDataset": DatasetEntry(REDSRecurrentDataset),
    "Vimeo90KRecurrentDataset": DatasetEntry(Vimeo90KRecurrentDataset),
    # BasicSR's sliding-window (EDVR) training sets: the same data, GT = the centre frame only
    "REDSDataset": DatasetEntry(REDSRecurrentDataset, {"center_gt_only": True}),
    "Vimeo90KDataset": DatasetEntry(Vimeo90KRecurrentDataset, {"center_gt_only": True}),
    "VideoRecurrentTestDataset": DatasetEntry(VideoRecurrentTestDataset),
    "Vimeo90KTestDataset": DatasetEntry(Vimeo90KTestDataset),
    "VideoTestVimeo90KDataset": DatasetEntry(Vimeo90KTestDataset),  # BasicSR's name in its BasicVSR test options
}

def is_training_dataset(dataset: Dataset) -> bool:
    """True for datasets indexed by an `ItemRequest` (index, lr_crop, num_frames, seed)."""
    return isinstance(dataset, TrainingClips)


def build_dataset(spec: Mapping[str, Any], phase: str = "train") -> Dataset:
    """Construct the dataset `spec["type"]` with the rest of `spec` as keyword arguments.
    Errors name `datasets.<phase>.<key>`."""
    entry, kwargs = check_dataset_spec(spec, phase)
    try:
        return entry.cls(**{**entry.defaults, **kwargs})
    except (OptionValueError, OptionPathError) as exc:
        raise exc.with_prefix(f"datasets.{phase}") from None


def check_dataset_spec(spec: Mapping[str, Any], phase: str = "train") -> tuple[DatasetEntry, dict[str, Any]]:
    """Check the type and the argument names without touching any file (for a dry run); returns
    the registry entry and the keyword arguments."""
    prefix = f"datasets.{phase}"
    kwargs = dict(spec)
    dataset_type = kwargs.pop("type", None)
    if not isinstance(dataset_type, str) or dataset_type not in DATASETS:
        known = ", ".join(DATASETS)
        hint = closest(dataset_type, DATASETS) if isinstance(dataset_type, str) else None
        hint_text = f"did you mean '{hint}'? " if hint else ""
        raise ConfigError(f"{prefix}.type: unknown dataset {dataset_type!r} ({hint_text}known: {known})")
    entry = DATASETS[dataset_type]
    _check_arguments(entry.cls, dataset_type, kwargs, prefix)
    return entry, kwargs


def _check_arguments(cls: type, dataset_type: str, kwargs: Mapping[str, Any], prefix: str) -> None:
    parameters = {name: p for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}
    for key in kwargs:
        if key not in parameters:
            hint = closest(key, parameters)
            hint_text = f" (did you mean '{hint}'?)" if hint else ""
            raise ConfigError(f"{prefix}.{key}: unknown option for {dataset_type}{hint_text}; "
                              f"valid: {', '.join(parameters)}")
    for name, parameter in parameters.items():
        if parameter.default is inspect.Parameter.empty and name not in kwargs:
            raise ConfigError(f"{prefix}.{name}: required by {dataset_type}")
