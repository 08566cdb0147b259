"""scripts/evaluate.py: scores a trained checkpoint and the MATLAB-bicubic baseline per clip, and
reads every weights file the loader reads (BasicSR, MMagic, training states)."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch

import models
import train
from tests.conftest import tiny_options, write_options
from tests.model_helpers import mmagic_key, perturb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import evaluate  # noqa: E402


def test_evaluate_prints_table_and_json_for_model_and_bicubic(tiny_reds, tmp_path, capsys):
    data = tiny_options(tiny_reds, tmp_path / "exp", total_iter=2, curriculum={"type": "none"})
    data["logger"]["save_checkpoint_freq"] = 2
    opt = write_options(tmp_path / "o.yml", data)
    assert train.main(["-opt", opt]) == 0
    capsys.readouterr()
    out_json = tmp_path / "scores.json"
    assert evaluate.main(["-opt", opt, "--bicubic", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "| clip | BasicVSR PSNR | BasicVSR SSIM | bicubic PSNR | bicubic SSIM |" in printed
    scores = json.loads(out_json.read_text())
    assert len(scores["BasicVSR"]["clips"]) == 4 and len(scores["bicubic"]["clips"]) == 4
    assert 10 < scores["bicubic"]["average"]["psnr"] < 60
    assert scores["checkpoint"].endswith("net_g_2.pth")


def test_evaluate_without_checkpoint_is_one_line_error(tiny_reds, tmp_path, capsys):
    opt = write_options(tmp_path / "o.yml", tiny_options(tiny_reds, tmp_path / "exp"))
    assert evaluate.main(["-opt", opt]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no net_g_<iter>.pth checkpoint" in err and err.count("\n") == 1


def scores_of(evaluate_argv: list[str], out: Path, method: str) -> dict:
    assert evaluate.main([*evaluate_argv, "--json", str(out)]) == 0
    return json.loads(out.read_text())[method]


def test_evaluate_scores_a_training_state_like_its_weights_file(tiny_reds, tmp_path, capsys):
    """The one loader: `<iter>.state` (what infer.py also reads) scores exactly like `net_g_<iter>.pth`."""
    data = tiny_options(tiny_reds, tmp_path / "exp", total_iter=2, curriculum={"type": "none"})
    data["logger"]["save_checkpoint_freq"] = 2
    opt = write_options(tmp_path / "o.yml", data)
    assert train.main(["-opt", opt]) == 0
    run = tmp_path / "exp" / "tiny"
    weights = scores_of(["-opt", opt, "--checkpoint", str(run / "models" / "net_g_2.pth")], tmp_path / "w.json",
                        "BasicVSR")
    state = scores_of(["-opt", opt, "--checkpoint", str(run / "training_states" / "2.state")], tmp_path / "s.json",
                      "BasicVSR")
    assert state == weights and 10 < weights["average"]["psnr"] < 60


def test_evaluate_scores_an_mmagic_checkpoint_like_the_basicsr_one(tiny_reds, tmp_path, capsys):
    """MMagic's BasicVSR++ keys (`generator.`, its SpyNet and upsampler names) are converted on load."""
    data = tiny_options(tiny_reds, tmp_path / "exp")
    data["network_g"] = {"type": "BasicVSRPlusPlus", "mid_channels": 8, "num_blocks": 1}
    opt = write_options(tmp_path / "o.yml", data)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = perturb(models.build_network(data["network_g"]))
    torch.save({"params": net.state_dict()}, tmp_path / "basicsr.pth")
    torch.save({"meta": {}, "state_dict": {mmagic_key(k): v for k, v in net.state_dict().items()}}, tmp_path / "mm.pth")
    basicsr = scores_of(["-opt", opt, "--checkpoint", str(tmp_path / "basicsr.pth")], tmp_path / "b.json",
                        "BasicVSRPlusPlus")
    mmagic = scores_of(["-opt", opt, "--checkpoint", str(tmp_path / "mm.pth")], tmp_path / "m.json", "BasicVSRPlusPlus")
    assert mmagic == basicsr and 10 < basicsr["average"]["psnr"] < 60
