"""The one network loader: build a `network_g` spec and load weights into it.

`train.py` (pretrained weights, strict or not), `scripts/evaluate.py`, `infer.py` (through
`vsr_accel.infer.inference.load_model`), `experiments/` and the benchmarks all come through here,
so every entry point reads the same files the same way: BasicSR's `params`/`params_ema`, a bare
state_dict, MMagic's `state_dict` (keys converted by `models.convert`) or a vsr-accel training
state, always weights-only.
"""
from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import models  # the registry (build_network, is_recurrent); used at call time, after the package has loaded
from models.arch_util import UntrainedPartWarning
from models.convert import to_basicsr_keys
from vsr_accel.core.checkpoint import load_weights_strict, read_network_weights


def load_network(spec: Mapping[str, Any], checkpoint: str | Path | None = None, *, param_key: str | None = None,
                 strict: bool = True, key: str = "network_g",
                 on_untrained: Callable[[str], None] | None = None) -> nn.Module:
    """`spec`'s network, with the weights of `checkpoint` when one is given (`param_key`: which
    entry of the file, None for `params_ema`, else `params`, else MMagic's `state_dict`). The
    weights are read first, so a bad file is reported before a network (or its SpyNet file) is
    built. `strict=False` is BasicSR's `strict_load_g: false`: keys that do not fit are skipped.
    A part that starts untrained (SpyNet without `spynet_path`) is said in one plain line
    (`on_untrained`, default: a note on stderr) only when no checkpoint is loaded over it."""
    state = None
    if checkpoint is not None:
        state = to_basicsr_keys(spec.get("type"), read_network_weights(checkpoint, param_key))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UntrainedPartWarning)
        net = models.build_network(spec, key)
    for warning in caught:  # an untrained part is news only without a checkpoint; the rest passes through
        if not issubclass(warning.category, UntrainedPartWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        elif state is None:
            (on_untrained or _print_note)(str(warning.message))
    if state is not None:
        if strict:
            load_weights_strict(net, state, str(checkpoint))
        else:
            net.load_state_dict(state, strict=False)
    return net


def _print_note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def meta_network(spec: Mapping[str, Any], key: str = "network_g") -> nn.Module:
    """`spec`'s network on the meta device: its shapes without memory or weights, for counting
    parameters and FLOPs (`train.py --plan`). Pretrained-file arguments (`spynet_path`,
    `edvr_path`) are left out, so planning needs no file; they change no shape."""
    spec = {name: value for name, value in spec.items() if not name.endswith("_path")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedPartWarning)
        with torch.device("meta"):
            return models.build_network(spec, key)


def input_window(net: nn.Module) -> int | None:
    """Input frames a sliding-window network (EDVR) reads per output frame, its `num_frame`; None
    for a recurrent network, which reads the whole clip (the `window` of `vsr_accel.infer.restore`)."""
    return None if models.is_recurrent(net) else int(net.num_frame)


def output_layer(net: nn.Module) -> nn.Module | None:
    """The layer a network runs once per output frame, so that inference can count frames as they
    finish: BasicSR's `conv_last`, the last convolution of every network here (a recurrent network
    runs it for each frame of its last pass, in frame order; a sliding-window network once per
    window). None for a network without one (progress then advances per chunk)."""
    layer = getattr(net, "conv_last", None)
    return layer if isinstance(layer, nn.Module) else None
