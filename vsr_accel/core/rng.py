"""Seeding and RNG state capture, so a resumed run continues the same random streams.

Every stream a training step may draw from is captured per rank in a checkpoint: Python's
`random`, numpy's global RNG, torch's CPU generator and every CUDA device's generator. Data
augmentation does not depend on any of them: each item's crop/flip comes from the sampler's
`item_seed`, a function of (seed, global sample number), i.e. of (seed, rank, step) -- so the
number of DataLoader workers, their scheduling and a resume never change what a step sees.
DataLoader workers are still seeded from (seed, rank, start iteration) through
`loader_generator`, never from the global torch RNG, so a third-party dataset that draws from
the global RNGs at least repeats within a launch.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> None:
    """Distinct but reproducible streams per rank (rank offsets the seed)."""
    seed = seed + rank
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": list(_python_state_to_list(random.getstate())),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured. CUDA generators are restored for the devices both the
    checkpoint and this machine have (a resume may land on a node with another GPU count)."""
    random.setstate(_python_state_from_list(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def loader_generator(seed: int, rank: int, start_iter: int) -> torch.Generator:
    """A private generator for `DataLoader(generator=...)`: the DataLoader draws its workers' base
    seed from it instead of from (and advancing) the global torch RNG, so workers are seeded from
    (seed, rank, start iteration) and creating the loader leaves the captured RNG state alone."""
    generator = torch.Generator()
    generator.manual_seed(((int(seed) * 1_000_003 + int(rank)) * 1_000_003 + int(start_iter)) % 2**63)
    return generator


# weights_only=True loads tensors, lists, ints and strings but not tuples of arbitrary shape or
# numpy arrays: store both RNG states in those types.
def _python_state_to_list(state: tuple) -> list:
    version, internal, gauss = state
    return [version, torch.tensor(internal, dtype=torch.int64), gauss]


def _python_state_from_list(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(int(x) for x in internal.tolist()), gauss)


def _numpy_state() -> list:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]
