"""Network registry: `build_network({"type": "BasicVSRM", **kwargs})`, and the one loader of
weights into it (`load_network`, models/loading.py).

An explicit dict of the networks the paper trains (BasicVSR, BasicVSR-M, EDVR, EDVR-M) and of
the ones VSR papers compare against today (BasicVSR++, IconVSR); nothing is discovered by scanning. Option
mistakes (unknown type, misspelt argument, wrong value type, impossible value) raise one-line
ConfigErrors that name the option key, e.g. `network_g.num_blocks: unknown argument ... (did
you mean 'num_block'?)`.
"""
from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from models.arch_util import InvalidArgument
from models.basicvsr import BASICVSR_M_DEFAULTS, BasicVSR
from models.basicvsrpp import BasicVSRPlusPlus
from models.convert import to_basicsr_keys
from models.edvr import EDVR, EDVR_M_DEFAULTS
from models.iconvsr import IconVSR
from models.arch_util import UntrainedPartWarning
from models.loading import input_window, load_network, meta_network, output_layer
from vsr_accel.core.checks import closest, is_int
from vsr_accel.core.errors import ConfigError

__all__ = ["build_network", "load_network", "meta_network", "UntrainedPartWarning", "input_window", "output_layer", "network_arguments", "is_recurrent",
           "is_recurrent_type", "required_multiple", "to_basicsr_keys", "check_model_type", "upscale_factor", "check_scale",
           "NETWORKS", "BasicVSR", "BasicVSRPlusPlus", "EDVR", "IconVSR"]


def _never_hr_input(arguments: Mapping[str, Any]) -> bool:
    return False


def _edvr_hr_input(arguments: Mapping[str, Any]) -> bool:
    return bool(arguments.get("hr_in", False))


def _basicvsrpp_hr_input(arguments: Mapping[str, Any]) -> bool:
    return not arguments.get("is_low_res_input", True)


@dataclass(frozen=True)
class NetworkEntry:
    """A registered network: its class and the defaults a preset puts before the user's options."""

    cls: type[nn.Module]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # LR crop sides must be multiples of this (EDVR's PCD pyramid halves them twice). IconVSR's
    # keyframe extractor has the same pyramid but reflect-pads frames itself, as BasicSR's does,
    # so any crop fits it (and infer.py pads nothing that would change its numbers).
    crop_multiple: int = 1
    # Whether these arguments make the network take HR-size input that it brings down to the
    # working resolution with two stride-2 stages: the input sides then need 4x the multiple.
    hr_input: Callable[[Mapping[str, Any]], bool] = _never_hr_input
    # BasicSR's `model_type`s that train this network the way vsr-accel does.
    model_types: tuple[str, ...] = ("VideoRecurrentModel",)
    # Output size / input size for LR input (fixed by the architecture: two x2 pixel shuffles);
    # with HR input (`hr_input`) the output keeps the input size.
    upscale: int = 4


SLIDING_WINDOW_MODELS = ("EDVRModel", "VideoBaseModel")

NETWORKS: dict[str, NetworkEntry] = {
    "BasicVSR": NetworkEntry(BasicVSR),
    "BasicVSRM": NetworkEntry(BasicVSR, BASICVSR_M_DEFAULTS),
    "BasicVSRPlusPlus": NetworkEntry(BasicVSRPlusPlus, hr_input=_basicvsrpp_hr_input),
    "EDVR": NetworkEntry(EDVR, crop_multiple=4, hr_input=_edvr_hr_input, model_types=SLIDING_WINDOW_MODELS),
    "EDVRM": NetworkEntry(EDVR, EDVR_M_DEFAULTS, crop_multiple=4, hr_input=_edvr_hr_input,
                          model_types=SLIDING_WINDOW_MODELS),
    "IconVSR": NetworkEntry(IconVSR),
}


def _entry(network_type: Any, key: str) -> NetworkEntry:
    if not isinstance(network_type, str) or network_type not in NETWORKS:
        known = list(NETWORKS)
        suggestion = closest(network_type, known) if isinstance(network_type, str) else None
        hint = f"did you mean '{suggestion}'? " if suggestion else ""
        raise ConfigError(f"{key}.type: unknown network {network_type!r} ({hint}known: {', '.join(known)})")
    return NETWORKS[network_type]


def _parameters(cls: type[nn.Module]) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self")
    return params


def network_arguments(network_type: str) -> list[str]:
    """Keyword arguments that `network_type` accepts (presets accept their base class's)."""
    return list(_parameters(_entry(network_type, "network_g").cls))


def _accepted_types(annotation: Any) -> tuple[type, ...]:
    """Runtime types for an annotation such as `int`, `bool`, `int | None`, `str | PathLike | None`."""
    members = typing.get_args(annotation) or (annotation,)
    accepted: list[type] = []
    for member in members:
        member = typing.get_origin(member) or member  # os.PathLike[str] -> os.PathLike
        accepted.append(type(None) if member is None else member)
    return tuple(accepted)


def _type_matches(value: Any, accepted: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in accepted:
        return False  # YAML `true` must not pass as num_feat=1
    if is_int(value) and float in accepted:
        return True
    return isinstance(value, accepted)


def _describe(accepted: tuple[type, ...]) -> str:
    names = {int: "an integer", bool: "true/false", float: "a number", str: "a string",
             type(None): "null (~)", os.PathLike: "a path"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in accepted))


def _check_arguments(cls: type[nn.Module], kwargs: Mapping[str, Any], key: str, network_type: str) -> None:
    params = _parameters(cls)
    hints = typing.get_type_hints(cls.__init__)
    for name, value in kwargs.items():
        if name not in params:
            suggestion = closest(str(name), params)
            hint = f"did you mean '{suggestion}'? " if suggestion else ""
            raise ConfigError(f"{key}.{name}: unknown argument for {network_type} ({hint}valid: {', '.join(params)})")
        accepted = _accepted_types(hints[name]) if name in hints else ()
        if accepted and not _type_matches(value, accepted):
            raise ConfigError(f"{key}.{name}: expected {_describe(accepted)}, got {value!r} ({type(value).__name__})")


def build_network(spec: Mapping[str, Any], key: str = "network_g") -> nn.Module:
    """Instantiate `spec["type"]` with the other entries as keyword arguments.

    Presets (BasicVSRM, EDVRM) apply their defaults first, so any argument can be overridden.
    BasicSR checkpoints of every registered network load with strict=True; MMagic BasicVSR++
    checkpoints after `models.convert.to_basicsr_keys`.
    `key` is the option path used in error messages (`network_g`, ...). A SpyNet checkpoint
    that cannot be read raises CheckpointError from the constructor, naming the file.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{key}: expected a mapping with a 'type' entry, got {type(spec).__name__}")
    if "type" not in spec:
        raise ConfigError(f"{key}.type: missing (known: {', '.join(NETWORKS)})")
    network_type = spec["type"]
    entry = _entry(network_type, key)
    kwargs = {name: value for name, value in spec.items() if name != "type"}
    _check_arguments(entry.cls, kwargs, key, network_type)
    try:
        return entry.cls(**{**entry.defaults, **kwargs})
    except InvalidArgument as exc:
        raise ConfigError(f"{key}.{exc.argument}: {exc.reason}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {network_type} rejected its arguments {kwargs}: {exc}") from exc


def _unwrap(module: nn.Module) -> nn.Module:
    """The network inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif isinstance(getattr(module, "_orig_mod", None), nn.Module):
            module = module._orig_mod
        else:
            return module


def is_recurrent(module: nn.Module) -> bool:
    """True when the network restores every frame of the clip (output (b, t, 3, 4h, 4w), as
    BasicVSR, BasicVSR++ and IconVSR); False for sliding-window networks that restore the
    centre frame (EDVR)."""
    network = _unwrap(module)
    recurrent = getattr(type(network), "recurrent", None)
    if not isinstance(recurrent, bool):
        raise TypeError(f"is_recurrent: {type(network).__name__} is not a registered network")
    return recurrent


def is_recurrent_type(name: str) -> bool:
    """`is_recurrent` by registered type name (`network_g.type`), before any network is built."""
    return _entry(name, "network_g").cls.recurrent


def required_multiple(network: str | Mapping[str, Any]) -> int:
    """The LR crop's sides must be multiples of this: 4 for EDVR (16 with `hr_in`), 4 for
    BasicVSR++ with `is_low_res_input: false`, 1 for BasicVSR, BasicVSR++ and IconVSR.

    Accepts a type name or a whole `network_g` spec (which can switch on the HR-input options).
    """
    spec: Mapping[str, Any] = {"type": network} if isinstance(network, str) else network
    entry = _entry(spec.get("type"), "network_g")
    return entry.crop_multiple * (4 if entry.hr_input({**entry.defaults, **spec}) else 1)


def upscale_factor(network: str | Mapping[str, Any]) -> int:
    """The network's fixed output/input size ratio: 4 for every registered network on LR input,
    1 with HR input (EDVR `hr_in: true`, BasicVSR++ `is_low_res_input: false`, the deblurring
    settings). Accepts a type name or a whole `network_g` spec."""
    spec: Mapping[str, Any] = {"type": network} if isinstance(network, str) else network
    entry = _entry(spec.get("type"), "network_g")
    return 1 if entry.hr_input({**entry.defaults, **spec}) else entry.upscale


def check_scale(scale: Any, network: str | Mapping[str, Any], key: str = "scale", where: str = "") -> None:
    """The options' `scale` must be the network's factor (`upscale_factor`): a mismatch is named
    before any data is read, instead of a size error (or a traceback) in the first step."""
    factor = upscale_factor(network)
    if scale != factor:
        name = network if isinstance(network, str) else network.get("type")
        how = "keeps the input size with these arguments" if factor == 1 else f"upsamples x{factor}"
        raise ConfigError(f"{where}{key}: {scale!r}, but network_g.type {name} {how} (set {key}: {factor}, and give "
                          f"dataroot_lq frames 1/{factor} of the GT size)")


def check_model_type(model_type: str | None, spec: Mapping[str, Any], key: str = "model_type") -> None:
    """BasicSR's `model_type` picks the training loop; here the network does, so the option is
    checked against it (a BasicSR file with EDVRModel for a BasicVSR is a mistake worth naming).
    None (not given) accepts any network."""
    if model_type is None:
        return
    entry = _entry(spec.get("type"), "network_g")
    if model_type not in entry.model_types:
        raise ConfigError(f"{key}: {model_type!r} does not train {spec.get('type')} (use "
                          f"{' or '.join(entry.model_types)}, or leave it out)")
