"""RNG capture (vsr_accel/core/rng.py): the streams a resume restores, and the loader's private
generator."""
from __future__ import annotations

import torch

from vsr_accel.core import checkpoint as ckpt
from vsr_accel.core.rng import loader_generator, rng_state, set_rng_state


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    import random

    import numpy as np
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    np.random.normal()  # a cached gaussian is part of numpy's state
    saved = rng_state()
    expected = (torch.rand(3), random.random(), np.random.rand(3), np.random.normal())
    ckpt.atomic_save({"rng": [saved]}, tmp_path / "r.pth")
    set_rng_state(torch.load(tmp_path / "r.pth", weights_only=True)["rng"][0])
    again = (torch.rand(3), random.random(), np.random.rand(3), np.random.normal())
    assert torch.equal(expected[0], again[0]) and expected[1] == again[1]
    assert np.array_equal(expected[2], again[2]) and expected[3] == again[3]


def test_loader_generator_depends_on_seed_rank_and_step_only():
    def draw(*key):
        return torch.randint(0, 2**62, (1,), generator=loader_generator(*key)).item()
    assert draw(0, 0, 10) == draw(0, 0, 10)
    assert len({draw(0, 0, 10), draw(1, 0, 10), draw(0, 1, 10), draw(0, 0, 11)}) == 4
