"""scripts/evaluate.py: scores a trained checkpoint and the MATLAB-bicubic baseline per clip."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import train
from tests.conftest import tiny_options, write_options

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
