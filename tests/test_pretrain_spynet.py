"""scripts/pretrain_spynet.py: the synthetic pairs carry the flow they claim, training resumes exactly,
the weights load as BasicSR's SpyNet file, and a finished file is kept."""
from __future__ import annotations

import json

import pytest
import torch

from models.arch_util import flow_warp
from models.spynet import SpyNet
from tests.conftest import load_script

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def script():
    return load_script("pretrain_spynet")


def image(seed: int = 0) -> torch.Tensor:
    """A textured (3, 96, 120) frame: smooth noise at several scales."""
    gen = torch.Generator().manual_seed(seed)
    layers = [torch.nn.functional.interpolate(torch.rand(1, 3, 96 // k, 120 // k, generator=gen), size=(96, 120),
                                              mode="bicubic", align_corners=False) for k in (2, 4, 8)]
    return sum(layers)[0].clamp(0, 1) / 1.0


def test_synthetic_pairs_are_related_by_their_flow(script):
    gen = torch.Generator().manual_seed(1)
    for mag in (0.5, 3.0):
        ref, supp, flow = script.synthetic_pair(image(), gen, 48, 12.0, mag)
        assert ref.shape == supp.shape == (3, 48, 48) and flow.shape == (2, 48, 48)
        warped = flow_warp(supp[None], flow.permute(1, 2, 0)[None], padding_mode="border")[0]
        inner = (slice(None), slice(6, -6), slice(6, -6))
        # up to the noise added to each frame (<= 2%), warping supp by the flow gives ref
        assert (warped - ref)[inner].abs().mean() < 0.5 * (supp - ref)[inner].abs().mean()
        assert flow.norm(dim=0).mean() == pytest.approx(mag, rel=0.35)  # the margin crop trims the field a little


def test_static_pairs_have_zero_flow(script):
    ref, supp, flow = script.synthetic_pair(image(), torch.Generator().manual_seed(2), 32, 12.0, 2.0, static=1.0)
    assert torch.count_nonzero(flow) == 0 and (ref - supp).abs().mean() < 0.03  # only the noise differs


def test_training_resumes_exactly_and_writes_basicsr_weights(script, tmp_path, monkeypatch):
    settings = script.Settings(iters=4, batch=2, patch=32)
    straight = script.train(settings, tmp_path / "a.pth", quiet=True, save_every=2)
    calls = {"n": 0}
    real_step = torch.optim.Adam.step

    def interrupted_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        script.train(settings, tmp_path / "b.pth", quiet=True, save_every=2)
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    assert (tmp_path / "b.pth.partial.state").is_file()
    resumed = script.train(settings, tmp_path / "b.pth", quiet=True, save_every=2)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_command_writes_loadable_weights_and_keeps_them(script, tmp_path, capsys):
    out = tmp_path / "spynet.pth"
    assert script.main(["--iters", "2", "--batch", "2", "--no-report", "--quiet", "--out", str(out)]) == 0
    assert json.loads(out.with_name("spynet.pth.json").read_text())["settings"]["iters"] == 2
    state = torch.load(out, weights_only=True)["params"]
    assert "mean" not in state and "basic_module.5.basic_module.8.bias" in state  # BasicSR's file layout
    SpyNet(out)  # strict load, as network_g.spynet_path does
    capsys.readouterr()
    assert script.main(["--iters", "2", "--batch", "2", "--no-report", "--quiet", "--out", str(out)]) == 0
    assert "kept" in capsys.readouterr().out
    assert script.main(["--iters", "0", "--out", str(out)]) == 2
