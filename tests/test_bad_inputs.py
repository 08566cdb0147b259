"""The bad-input matrix: every case makes train.py exit non-zero with ONE line naming the culprit
(file, option key or value), no traceback (unless --debug), and leaves an earlier run's files
exactly as they were.

Most cases call `train.main` in-process (fast); `test_in_a_real_process` runs a few as real
processes to prove that stderr carries no traceback. Every case starts next to a copy of a real
earlier run with the same name (`experiments/tiny`), whose checkpoints are compared by hash.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import torch

import train
from datasets.io import LmdbWriter
from tests.conftest import make_reds_like, tiny_options, write_options
from vsr_accel.core.errors import ConfigError
from vsr_accel.train import builders

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
ENV.pop("VSR_TEST_KILL_AT", None)


def base_options(data: Path, exp: Path) -> dict:
    options = tiny_options(data, exp, total_iter=4)  # 4 curriculum stages of 1 iteration, small shapes
    options["train"]["curriculum"].update(lr_crops=[8, 16], frame_counts=[2, 3])
    options.pop("val")
    options["datasets"].pop("val")
    options["logger"].update(save_checkpoint_freq=2, keep_last=10)
    return options


# -- the earlier run that no bad input may damage -------------------------------------------------

CHECKPOINT_DIRS = ("models", "training_states")


def snapshot(run: Path) -> dict[str, str]:
    return {f"{d}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
            for d in CHECKPOINT_DIRS for p in sorted((run / d).iterdir())}


@dataclasses.dataclass
class EarlierRun:
    path: Path
    hashes: dict[str, str]

    def place(self, exp: Path) -> Path:
        """A copy at exp/tiny (checkpoints hard-linked: cheap, and any in-place write would show)."""
        def link_or_copy(src, dst):
            if src.endswith((".pth", ".state")):
                os.link(src, dst)
            else:
                shutil.copy2(src, dst)
        shutil.copytree(self.path, exp / "tiny", copy_function=link_or_copy)
        return exp / "tiny"

    def assert_intact(self, exp: Path) -> None:
        """Unchanged in place, or (for a fresh run) moved aside to tiny_archived_<time> unchanged."""
        candidates = [exp / "tiny", *sorted(exp.glob("tiny_archived_*"))]
        for run in candidates:
            if run.is_dir() and all((run / name).is_file() for name in self.hashes):
                current = {name: hashlib.sha256((run / name).read_bytes()).hexdigest() for name in self.hashes}
                assert current == self.hashes, f"files of the earlier run changed in {run}"
                return
        pytest.fail(f"the earlier run's checkpoints are gone from {candidates}")


@pytest.fixture(scope="module")
def earlier_run(tiny_reds, tmp_path_factory) -> EarlierRun:
    root = tmp_path_factory.mktemp("earlier")
    assert train.main(["-opt", write_options(root / "o.yml", base_options(tiny_reds, root / "exp"))]) == 0
    run = root / "exp" / "tiny"
    return EarlierRun(run, snapshot(run))


# -- building cases ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    """`setup(ctx)` edits `ctx.options` / files and may return extra command-line arguments."""
    name: str
    setup: Callable[["Ctx"], list[str] | None]
    culprit: tuple[str, ...]  # substrings the error line must contain
    exit_code: int = 2


@dataclasses.dataclass
class Ctx:
    tmp: Path
    data: Path
    options: dict
    run: Path  # the earlier run's copy at experiments/tiny
    monkeypatch: pytest.MonkeyPatch | None = None
    expected: list[str] = dataclasses.field(default_factory=list)  # culprits a setup finds out (line numbers)

    @property
    def train(self) -> dict:
        return self.options["datasets"]["train"]

    def small_data(self, clips: dict[str, int] | None = None, **kwargs) -> Path:
        """A private dataset (two clips of 6 frames) that a case may damage; the options use it."""
        root = make_reds_like(self.tmp / "data", clips or {"000": 6, "001": 6}, **kwargs)
        self.train.update(dataroot_gt=str(root / "train_sharp"),
                          dataroot_lq=str(root / "train_sharp_bicubic" / "X4"),
                          meta_info_file=str(root / "meta_info.txt"))
        self.options["train"]["curriculum"] = {"type": "none"}  # 5-frame windows: every frame 1-4 is read
        return root


def setter(path: str, value) -> Callable[[Ctx], None]:
    def apply(ctx: Ctx) -> None:
        *parents, last = path.split(".")
        node = ctx.options
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return apply


def corrupt_png(ctx: Ctx) -> None:
    root = ctx.small_data()
    (root / "train_sharp_bicubic" / "X4" / "000" / "00000002.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 40)


def lmdb_without_meta(ctx: Ctx) -> None:
    lmdb_path = ctx.tmp / "gt.lmdb"
    with LmdbWriter(lmdb_path) as writer:
        for frame in range(6):
            image = np.full((96, 128, 3), frame, np.uint8)
            writer.put_encoded(f"000/{frame:08d}", cv2.imencode(".png", image)[1].tobytes(), image.shape)
    (lmdb_path / "meta_info.txt").unlink()
    ctx.train.update(dataroot_gt=str(lmdb_path), io_backend={"type": "lmdb"})


def meta_lists_missing_clip(ctx: Ctx) -> None:
    root = ctx.small_data()
    with open(root / "meta_info.txt", "a") as meta:
        meta.write("999 6 (96,128,3)\n")


def meta_malformed(ctx: Ctx) -> None:
    root = ctx.small_data()
    (root / "meta_info.txt").write_text("000 six frames\n")


def lr_gt_size_mismatch(ctx: Ctx) -> None:
    root = ctx.small_data()
    for clip in ("000", "001"):
        for frame in (root / "train_sharp_bicubic" / "X4" / clip).iterdir():
            image = cv2.imread(str(frame))
            cv2.imwrite(str(frame), cv2.resize(image, (40, 30), interpolation=cv2.INTER_AREA))


def clip_too_short(ctx: Ctx) -> None:
    ctx.small_data({"000": 3, "001": 3})


def empty_lq_folder(ctx: Ctx) -> None:
    ctx.small_data()
    empty = ctx.tmp / "empty"
    empty.mkdir()
    ctx.train["dataroot_lq"] = str(empty)


def root_is_a_file(ctx: Ctx) -> None:
    (ctx.tmp / "frames.zip").write_bytes(b"PK")
    ctx.train["dataroot_gt"] = str(ctx.tmp / "frames.zip")


def too_few_clips_for_batch(ctx: Ctx) -> None:
    ctx.small_data({"000": 6})


def missing_val_folder(ctx: Ctx) -> None:
    ctx.options["datasets"]["val"] = {"type": "VideoRecurrentTestDataset", "dataroot_gt": str(ctx.tmp / "nope_gt"),
                                      "dataroot_lq": str(ctx.data / "train_sharp_bicubic" / "X4")}
    ctx.options["val"] = {"val_freq": 2, "metrics": {"psnr": {"type": "calculate_psnr"}}}


def weights_file(ctx: Ctx, network: dict, name: str) -> Path:
    import models
    path = ctx.tmp / name
    torch.save({"params": models.build_network(network).state_dict()}, path)
    return path


def pretrain(kind: str) -> Callable[[Ctx], None]:
    def apply(ctx: Ctx) -> None:
        if kind == "wider":
            path = weights_file(ctx, {"type": "BasicVSR", "num_feat": 8, "num_block": 1}, "wide.pth")
        elif kind == "edvr":
            path = weights_file(ctx, {"type": "EDVRM"}, "edvr.pth")
        elif kind == "truncated":
            path = ctx.tmp / "truncated.pth"
            path.write_bytes((ctx.run / "models" / "net_g_2.pth").read_bytes()[:50_000])
        elif kind == "code":
            path = ctx.tmp / "evil.pth"
            torch.save({"params": Exploit(ctx.tmp / "pwned")}, path)
        ctx.options["path"]["pretrain_network_g"] = str(path)
    return apply


class Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def resume_state(kind: str) -> Callable[[Ctx], None]:
    def apply(ctx: Ctx) -> None:
        if kind == "truncated":
            path = ctx.tmp / "4.state"
            path.write_bytes((ctx.run / "training_states" / "4.state").read_bytes()[:100_000])
        elif kind == "code":
            path = ctx.tmp / "4.state"
            torch.save({"iter": 4, "network": Exploit(ctx.tmp / "pwned")}, path)
        elif kind == "missing":
            path = ctx.tmp / "no_such.state"
        elif kind == "weights":
            path = ctx.run / "models" / "net_g_2.pth"
        ctx.options["path"]["resume_state"] = str(path)
    return apply


def auto_resume_with(path: str, value) -> Callable[[Ctx], list[str]]:
    def apply(ctx: Ctx) -> list[str]:
        setter(path, value)(ctx)
        return ["--auto_resume"]
    return apply


def raise_oom(ctx: Ctx) -> None:
    ctx.options["train"]["curriculum"] = {"type": "none"}
    ctx.monkeypatch.setattr(builders, "build_pixel_loss", lambda **kw: oom_loss)


def oom_loss(output, target):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def invalid_yaml(ctx: Ctx) -> list[str]:
    bad = ctx.tmp / "bad.yml"
    bad.write_text("name: tiny\ntrain:\n  total_iter: [4\n")
    return ["-opt", str(bad)]


def options_saved_as(encoding: str) -> Callable[[Ctx], list[str]]:
    """The options file as a Windows editor (or PowerShell's `>`) may save it, with a comment
    in French so that a single-byte encoding is not plain ASCII either."""
    def apply(ctx: Ctx) -> list[str]:
        path = ctx.tmp / f"options_{encoding}.yml"
        text = "# réglages de l'équipe\n" + Path(write_options(ctx.tmp / "plain.yml", ctx.options)).read_text()
        path.write_bytes(text.encode(encoding))
        return ["-opt", str(path)]
    return apply


def duplicate_key(ctx: Ctx) -> list[str]:
    """`total_iter: 4` and, further down the same `train:` mapping, `total_iter: 40`."""
    lines = Path(write_options(ctx.tmp / "plain.yml", ctx.options)).read_text().splitlines()
    train = lines.index("train:")
    first = next(i for i in range(train, len(lines)) if lines[i].strip().startswith("total_iter:"))
    end = next((i for i in range(train + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    lines.insert(end, "  total_iter: 40")
    path = ctx.tmp / "dup.yml"
    path.write_text("\n".join(lines) + "\n")
    ctx.expected.append(f"lines {first + 1} and {end + 1}")
    return ["-opt", str(path)]


def folder(ctx: Ctx, name: str) -> Path:
    path = ctx.tmp / name
    path.mkdir(exist_ok=True)
    return path


def deny_access(ctx: Ctx, *denied: Path) -> None:
    """As if `denied` belonged to another user: tests run as root, for whom every folder is
    writable, so `os.access` (what the start-up check asks) says no for these paths."""
    real_access = os.access
    refused = {os.path.realpath(p) for p in denied}

    def access(path, mode, *args, **kwargs):
        if os.path.realpath(path) in refused and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)
    ctx.monkeypatch.setattr(os, "access", access)


def experiments_root_is_a_file(ctx: Ctx) -> None:
    (ctx.tmp / "experiments.txt").write_text("not a folder\n")
    ctx.options["path"]["experiments_root"] = str(ctx.tmp / "experiments.txt")


def unwritable_experiments_with_earlier_run(ctx: Ctx) -> None:
    deny_access(ctx, ctx.run.parent)  # experiments/ holds the earlier run experiments/tiny


def unwritable_empty_experiments(ctx: Ctx) -> None:
    ctx.options["path"]["experiments_root"] = str(folder(ctx, "readonly_exp"))
    deny_access(ctx, ctx.tmp / "readonly_exp")


def unwritable_run_folder_on_resume(ctx: Ctx) -> list[str]:
    deny_access(ctx, ctx.run / "training_states")
    return ["--auto_resume"]


def seventy_bit_seed(ctx: Ctx) -> list[str]:
    return ["--set", f"manual_seed={2**70}"]


CASES = [
    # options
    Case("unknown top-level key", setter("trian", {"total_iter": 4}), ("'trian'", "'train'")),
    Case("unknown nested key", setter("train.optim_g.learning_rate", 1e-3), ("train.optim_g.learning_rate",)),
    Case("wrong type: total_iter text", setter("train.total_iter", "many"), ("train.total_iter", "many")),
    Case("wrong type: batch float", setter("datasets.train.batch_size_per_gpu", 2.5),
         ("datasets.train.batch_size_per_gpu", "2.5")),
    Case("wrong type: crop list as text", setter("train.curriculum.lr_crops", "16,24"),
         ("train.curriculum.lr_crops", "16,24")),
    Case("zero gt_size", setter("datasets.train.gt_size", 0), ("datasets.train.gt_size", "0")),
    Case("negative batch", setter("datasets.train.batch_size_per_gpu", -2), ("datasets.train.batch_size_per_gpu", "-2")),
    Case("zero total_iter", setter("train.total_iter", 0), ("train.total_iter", "0")),
    Case("negative learning rate", setter("train.optim_g.lr", -1e-4), ("train.optim_g.lr", "-0.0001")),
    Case("gt_size not a multiple of scale", setter("datasets.train.gt_size", 94), ("datasets.train.gt_size", "94")),
    Case("crop not a multiple of the model's need",
         lambda c: (setter("network_g", {"type": "EDVRM"})(c), setter("train.curriculum.lr_crops", [16, 18])(c)),
         ("train.curriculum.lr_crops", "18", "multiple of 4")),
    Case("stage lengths do not sum to total_iter", setter("train.curriculum.stage_iters", [1, 1, 1, 2]),
         ("train.curriculum.stage_iters", "sums to 5", "total_iter is 4")),
    Case("clip length beyond the clips", setter("train.curriculum.frame_counts", [2, 20]),
         ("train.curriculum.frame_counts", "20")),
    Case("unknown curriculum", setter("train.curriculum.type", "multigird"), ("train.curriculum", "multigird")),
    Case("unknown amp mode", setter("train.amp", "fp8"), ("train.amp", "fp8")),
    Case("zero NaN-check interval", setter("train.nan_check_freq", 0), ("train.nan_check_freq", "0")),
    Case("warmup longer than the run", setter("train.warmup_iter", 10), ("train.warmup_iter", "10")),
    Case("ema decay out of range", setter("train.ema_decay", 1.5), ("train.ema_decay", "1.5")),
    Case("unknown network", setter("network_g.type", "BasicVRS"), ("network_g.type", "BasicVRS", "BasicVSR")),
    Case("unknown network argument", setter("network_g.num_feats", 8), ("network_g.num_feats", "num_feat")),
    Case("unknown dataset type", setter("datasets.train.type", "REDSDatset"), ("datasets.train.type", "REDSDatset")),
    Case("unknown dataset option", setter("datasets.train.use_flip", True), ("datasets.train.use_flip", "use_hflip")),
    Case("options file missing", lambda c: ["-opt", str(c.tmp / "nope.yml")], ("nope.yml", "not found")),
    Case("options file not YAML", invalid_yaml, ("bad.yml", "not valid YAML")),
    Case("bad --set syntax", lambda c: ["--set", "train.total_iter"], ("train.total_iter", "KEY.PATH=VALUE")),
    Case("seed beyond what torch and numpy take", seventy_bit_seed, ("manual_seed", str(2**70), "4294967295")),
    Case("negative seed", setter("manual_seed", -1), ("manual_seed", "-1")),
    Case("options file saved as UTF-16 with a BOM", options_saved_as("utf-16"),
         ("options_utf-16.yml", "not UTF-8 text", "UTF-16")),
    Case("options file saved as UTF-16 without a BOM", options_saved_as("utf-16-le"),
         ("options_utf-16-le.yml", "not UTF-8 text", "UTF-16")),
    Case("options file in Latin-1", options_saved_as("latin-1"), ("options_latin-1.yml", "not UTF-8 text", "0xe9")),
    Case("duplicate key", duplicate_key, ("dup.yml", "'train.total_iter' is given twice")),  # + both lines
    Case("options file is a directory", lambda c: ["-opt", str(folder(c, "options_dir"))],
         ("options_dir", "is a directory")),
    Case("required section set to null", lambda c: ["--set", "datasets.train=null"], ("datasets.train", "missing")),
    Case("train section set to null", lambda c: ["--set", "train=~"], ("'train'", "missing")),
    # the run folder
    Case("experiments_root is a file", experiments_root_is_a_file,
         ("experiments.txt", "not a folder", "path.experiments_root")),
    Case("experiments folder unwritable, earlier run in it", unwritable_experiments_with_earlier_run,
         ("permission denied", "tiny_archived_", "path.experiments_root")),
    Case("experiments folder unwritable and empty", unwritable_empty_experiments,
         ("readonly_exp", "permission denied", "path.experiments_root")),
    Case("run folder unwritable on resume", unwritable_run_folder_on_resume,
         ("training_states", "permission denied")),
    # data
    Case("missing data root", setter("datasets.train.dataroot_gt", "/nonexistent/REDS/train_sharp"),
         ("datasets.train.dataroot_gt", "/nonexistent/REDS/train_sharp", "does not exist")),
    Case("data root is a file", root_is_a_file, ("datasets.train.dataroot_gt", "frames.zip", "not a folder")),
    Case("empty LR folder", empty_lq_folder, ("empty/000/00000000.png", "does not exist")),
    Case("corrupt PNG", corrupt_png, ("000/00000002.png", "cannot decode")),
    Case("LMDB without meta_info.txt", lmdb_without_meta, ("datasets.train.dataroot_gt", "gt.lmdb", "meta_info.txt")),
    Case("meta_info lists a missing clip", meta_lists_missing_clip, ("meta_info.txt", "999")),
    Case("meta_info line malformed", meta_malformed, ("meta_info.txt", "six frames")),
    Case("LR/GT size mismatch", lr_gt_size_mismatch, ("00000", "30x40")),
    Case("clips shorter than the requested frames", clip_too_short, ("5", "3")),
    Case("num_frame beyond the clips with no curriculum",
         lambda c: (setter("train.curriculum", {"type": "none"})(c), setter("datasets.train.num_frame", 10**9)(c)),
         ("datasets.train.num_frame", "1000000000", "12")),
    Case("LR crop larger than the smallest LR frame",
         lambda c: (setter("train.curriculum", {"type": "none"})(c), setter("datasets.train.gt_size", 128)(c)),
         ("datasets.train.gt_size 128", "LR crop 32", "24")),
    Case("fewer clips than one batch", too_few_clips_for_batch, ("1 clips", "global batch 2")),
    Case("validation folder missing", missing_val_folder, ("datasets.val.dataroot_gt", "nope_gt")),
    # checkpoints
    Case("pretrained weights of a wider model", pretrain("wider"), ("wide.pth", "shape mismatch")),
    Case("pretrained weights of another architecture", pretrain("edvr"), ("edvr.pth", "do not fit BasicVSR")),
    Case("pretrained weights truncated", pretrain("truncated"), ("truncated.pth", "cannot be read")),
    Case("pretrained weights with code in the pickle", pretrain("code"), ("evil.pth", "weights-only")),
    Case("pretrained weights path is a directory",
         lambda c: setter("path.pretrain_network_g", str(folder(c, "weights_dir")))(c), ("weights_dir", "is a directory")),
    Case("resume state is a directory", lambda c: setter("path.resume_state", str(c.run / "training_states"))(c),
         ("training_states", "is a directory")),
    Case("resume state truncated", resume_state("truncated"), ("4.state", "corrupt")),
    Case("resume state with code in the pickle", resume_state("code"), ("4.state", "unsafe")),
    Case("resume state missing", resume_state("missing"), ("no_such.state",)),
    Case("resume state is a weights file", resume_state("weights"), ("net_g_2.pth", "no 'iter'")),
    Case("resume with a changed model", auto_resume_with("network_g.num_feat", 8),
         ("4.state", "network_g.num_feat 4 -> 8", "--force-resume")),
    Case("resume with a changed curriculum", auto_resume_with("train.curriculum.lr_crops", [8, 12]),
         ("train.curriculum.lr_crops [8, 16] -> [8, 12]", "curriculum stages changed", "--force-resume")),
    # runtime
    Case("out of memory", raise_oom, ("out of memory", "batch_size_per_gpu", "stage 1 (LR crop 24, 5 frames, 2 clips"),
         exit_code=3),
]


def make_ctx(tmp_path: Path, data: Path, earlier: EarlierRun, monkeypatch) -> Ctx:
    exp = tmp_path / "exp"
    return Ctx(tmp=tmp_path, data=data, options=base_options(data, exp), run=earlier.place(exp),
               monkeypatch=monkeypatch)


def prepare(case: Case, ctx: Ctx) -> list[str]:
    extra = case.setup(ctx) or []
    extra = list(extra) if isinstance(extra, list) else []
    opt = write_options(ctx.tmp / "options.yml", ctx.options)
    return extra if extra[:1] == ["-opt"] else ["-opt", opt, *extra]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, tiny_reds, earlier_run, tmp_path, monkeypatch, capsys):
    ctx = make_ctx(tmp_path, tiny_reds, earlier_run, monkeypatch)
    argv = prepare(case, ctx)
    capsys.readouterr()
    assert train.main(argv) == case.exit_code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    for culprit in (*case.culprit, *ctx.expected):
        assert culprit in err, f"{culprit!r} not in {err!r}"
    assert not (tmp_path / "pwned").exists()
    earlier_run.assert_intact(tmp_path / "exp")


def test_matrix_is_large_enough():
    assert len(CASES) + len(SUBPROCESS_CASES) >= 30


def test_debug_shows_the_traceback(tiny_reds, tmp_path):
    options = base_options(tiny_reds, tmp_path / "exp")
    options["train"]["total_iter"] = "many"
    with pytest.raises(ConfigError, match="train.total_iter"):
        train.main(["-opt", write_options(tmp_path / "o.yml", options), "--debug"])


def test_force_resume_continues_with_a_warning_naming_the_change(tiny_reds, earlier_run, tmp_path, capsys):
    exp = tmp_path / "exp"
    run = earlier_run.place(exp)
    for name in ("training_states/4.state", "models/net_g_4.pth"):
        (run / name).unlink()
    options = base_options(tiny_reds, exp)
    options["train"]["optim_g"]["lr"] = 5e-4
    assert train.main(["-opt", write_options(tmp_path / "o.yml", options), "--auto_resume", "--force-resume"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "train.optim_g.lr 0.001 -> 0.0005" in err and "--force-resume" in err
    assert (run / "training_states" / "4.state").is_file()


# -- real processes: no traceback on stderr -----------------------------------------------------

def limit_file_size() -> None:
    """A disk that fills up: writes past 10 MB fail (EFBIG) -- the weights file (6 MB) fits,
    the training state (16 MB) does not. Python ignores SIGXFSZ, so write() returns the error."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (10 * 2**20, 10 * 2**20))


def sub_unknown_key(ctx: Ctx) -> dict:
    setter("train.optim_g.betas2", 0.9)(ctx)
    return {"culprit": ("train.optim_g.betas2",)}


def sub_corrupt_png_in_worker(ctx: Ctx) -> dict:
    corrupt_png(ctx)
    ctx.train["num_worker_per_gpu"] = 1
    return {"culprit": ("000/00000002.png", "cannot decode")}


def sub_pickle_with_code(ctx: Ctx) -> dict:
    pretrain("code")(ctx)
    return {"culprit": ("evil.pth", "weights-only")}


def sub_disk_full(ctx: Ctx) -> dict:
    for name in ("training_states/4.state", "models/net_g_4.pth"):
        (ctx.run / name).unlink()  # as if the run had been stopped after iteration 2
    return {"culprit": ("4.state", "File too large", "2.state", "--auto_resume"), "args": ["--auto_resume"],
            "preexec_fn": limit_file_size, "intact": {"models/net_g_2.pth", "training_states/2.state"}}


def without_dac_override() -> None:
    """preexec_fn: file permissions apply to this process even as root. Tests run as root, who
    may write anywhere (CAP_DAC_OVERRIDE); dropping the capability from the bounding set before
    exec leaves root the owner's rights only, so a 0555 folder gives a real EACCES."""
    if os.geteuid() != 0:
        return  # an ordinary user: the folder's mode alone refuses the write
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def sub_unwritable_experiments(ctx: Ctx) -> dict:
    """A real permission error, not a patched os.access: the experiments folder holding the
    earlier run (which a fresh run moves aside inside it) is read-only."""
    ctx.run.parent.chmod(0o555)
    return {"culprit": (f"{ctx.run.parent}: permission denied", "tiny_archived_", "path.experiments_root"),
            "preexec_fn": without_dac_override, "nothing_moved": True}


SUBPROCESS_CASES = {"unknown key": sub_unknown_key, "corrupt PNG read by a worker": sub_corrupt_png_in_worker,
                    "pickle with code": sub_pickle_with_code, "disk full on save": sub_disk_full,
                    "experiments folder read-only": sub_unwritable_experiments}


@pytest.fixture(scope="module")
def launched(tiny_reds, earlier_run, tmp_path_factory):
    """All real-process cases start at once (they mostly wait on imports), then each test waits."""
    procs = {}
    for name, setup in SUBPROCESS_CASES.items():
        tmp = tmp_path_factory.mktemp(name.replace(" ", "_"))
        exp = tmp / "exp"
        ctx = Ctx(tmp=tmp, data=tiny_reds, options=base_options(tiny_reds, exp), run=earlier_run.place(exp))
        spec = setup(ctx)
        opt = write_options(tmp / "options.yml", ctx.options)
        proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), "-opt", opt, *spec.get("args", [])],
                                cwd=tmp, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=spec.get("preexec_fn"))
        procs[name] = (proc, spec, ctx)
    yield procs
    for proc, _, _ in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


@pytest.mark.parametrize("name", list(SUBPROCESS_CASES))
def test_in_a_real_process(name, launched, earlier_run):
    proc, spec, ctx = launched[name]
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"{name}: timed out")
    assert proc.returncode == 2, err[-3000:]
    assert "Traceback" not in err and "Traceback" not in out
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip("\n").endswith(errors[0]), err[-3000:]
    for culprit in spec["culprit"]:
        assert culprit in errors[0], f"{culprit!r} not in {errors[0]!r}"
    assert not (ctx.tmp / "pwned").exists()
    intact = spec.get("intact")
    if intact is None:
        earlier_run.assert_intact(ctx.tmp / "exp")
        if spec.get("nothing_moved"):
            assert sorted(p.name for p in (ctx.tmp / "exp").iterdir()) == ["tiny"]
    else:
        kept = EarlierRun(earlier_run.path, {k: v for k, v in earlier_run.hashes.items() if k in intact})
        kept.assert_intact(ctx.tmp / "exp")
        leftovers = [p for d in CHECKPOINT_DIRS for p in (ctx.run / d).iterdir() if p.name.endswith(".tmp")]
        assert not leftovers and not (ctx.run / "training_states" / "4.state").exists()

