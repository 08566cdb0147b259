"""The six published test sets: where they usually live and how each is scored.

BasicVSR, IconVSR and BasicVSR++ tables (and MMagic's model READMEs) have six columns:
REDS4 (BI), Vimeo-90K-T (BI), Vid4 (BI), UDM10 (BD), Vimeo-90K-T (BD), Vid4 (BD). "BI" LR frames
are MATLAB bicubic (scripts/generate_lr.py --kind bi), "BD" are Gaussian blur sigma 1.6 then
x4 subsampling (scripts/generate_lr.py --kind bd). `STANDARD_TEST_SETS` is the one place that
says, per set, the folders under a data root and the protocol; `find_test_sets(root)` lists which
are present.

Protocols, as read in the reference code:
- REDS4: RGB, crop 0, all frames (BasicSR options/test/BasicVSR/test_BasicVSR_REDS.yml; MMagic
  configs/_base_/datasets/basicvsr_test_config.py prefix 'REDS4-BIx4-RGB').
- Vimeo-90K-T: Y, crop 0, centre frame im4, averaged with the reversed clip's output (BasicSR
  test_BasicVSR_Vimeo90K_BIx4.yml / _BDx4.yml: `flip_seq: true`, `center_frame_only: true`,
  `test_y_channel: true`; MMagic: gt=['im4.png'], MirrorSequence, convert_to='Y').
- Vid4: Y, crop 0, all frames (BasicSR options/train/BasicVSR/train_BasicVSR_Vimeo90K_BIx4.yml
  and _BDx4.yml validate on Vid4 with `test_y_channel: true`, `crop_border: 0`; MMagic
  vid4_bi/bd_evaluator convert_to='Y'). BasicSR ships no Vid4 test option for BasicVSR.
- UDM10: Y, crop 0, all frames (MMagic udm10_evaluator convert_to='Y'; BasicSR has no UDM10 option).
MMagic's BasicVSR README: "Evaluated on RGB channels for REDS4 and Y channel for others."
All average PSNR/SSIM over the frames of a clip, then over clips (BasicSR and MMagic alike).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vsr_accel.core.errors import ConfigError, DataError
from vsr_accel.eval.protocols import Protocol

RGB_ALL_FRAMES = Protocol(test_y_channel=False, crop_border=0)
Y_ALL_FRAMES = Protocol(test_y_channel=True, crop_border=0)
Y_CENTRE_FLIPPED = Protocol(test_y_channel=True, crop_border=0, center_frame_only=True, flip_seq=True)


@dataclass(frozen=True)
class StandardTestSet:
    key: str                      # short name for --only (reds4_bi, vid4_bd, ...)
    column: str                   # the published table's column, e.g. "Vid4 (BI)"
    folder: str                   # under the data root (BasicSR's / MMagic's folder names)
    gt: tuple[str, ...]           # GT sub-folder candidates, the first present wins
    lq: tuple[str, ...]           # LQ sub-folder candidates
    dataset_type: str             # registry name (datasets.DATASETS)
    protocol: Protocol
    meta_info: tuple[str, ...] = ()  # clip-list candidates inside `folder`
    meta_info_required: bool = False  # Vimeo's LQ folders usually hold train + test septuplets


_VIMEO_GT = ("vimeo_septuplet/sequences", "GT")
_VIMEO_LISTS = ("meta_info_Vimeo90K_test_GT.txt", "vimeo_septuplet/sep_testlist.txt")

STANDARD_TEST_SETS: tuple[StandardTestSet, ...] = (
    StandardTestSet("reds4_bi", "REDS4 (BI)", "REDS4", ("GT",), ("sharp_bicubic", "BIx4"),
                    "VideoRecurrentTestDataset", RGB_ALL_FRAMES),
    StandardTestSet("vimeo_bi", "Vimeo-90K-T (BI)", "vimeo90k", _VIMEO_GT, ("BIx4", "vimeo_septuplet_matlabLRx4/sequences"),
                    "Vimeo90KTestDataset", Y_CENTRE_FLIPPED, _VIMEO_LISTS, True),
    StandardTestSet("vid4_bi", "Vid4 (BI)", "Vid4", ("GT",), ("BIx4",),
                    "VideoRecurrentTestDataset", Y_ALL_FRAMES, ("meta_info_Vid4_GT.txt",)),
    StandardTestSet("udm10_bd", "UDM10 (BD)", "UDM10", ("GT",), ("BDx4",),
                    "VideoRecurrentTestDataset", Y_ALL_FRAMES),
    StandardTestSet("vimeo_bd", "Vimeo-90K-T (BD)", "vimeo90k", _VIMEO_GT, ("BDx4",),
                    "Vimeo90KTestDataset", Y_CENTRE_FLIPPED, _VIMEO_LISTS, True),
    StandardTestSet("vid4_bd", "Vid4 (BD)", "Vid4", ("GT",), ("BDx4",),
                    "VideoRecurrentTestDataset", Y_ALL_FRAMES, ("meta_info_Vid4_GT.txt",)),
)


@dataclass(frozen=True)
class FoundTestSet:
    test_set: StandardTestSet
    spec: dict | None     # the dataset section (type + kwargs) when present
    missing: str | None   # why it is not, e.g. "no /data/Vid4/BDx4"


def _first_dir(folder: Path, candidates: tuple[str, ...]) -> Path | None:
    return next((folder / c for c in candidates if (folder / c).is_dir()), None)


def locate(test_set: StandardTestSet, root: Path, scale: int = 4) -> FoundTestSet:
    """The dataset section for one set under `root`, or why it is absent (GT or LQ folder missing).
    A set whose folders exist but whose required clip list does not is a user mistake (DataError),
    not an absent set: scoring every septuplet of a train+test folder would print a wrong number."""
    folder = Path(root) / test_set.folder
    gt, lq = _first_dir(folder, test_set.gt), _first_dir(folder, test_set.lq)
    if gt is None or lq is None:
        wanted = test_set.gt if gt is None else test_set.lq
        return FoundTestSet(test_set, None, "no " + " or ".join(str(folder / c) for c in wanted))
    meta = next((folder / m for m in test_set.meta_info if (folder / m).is_file()), None)
    if meta is None and test_set.meta_info_required:
        raise DataError(f"{folder}: {test_set.column} needs its clip list, "
                        f"{' or '.join(str(folder / m) for m in test_set.meta_info)} "
                        "(BasicSR's basicsr/data/meta_info/meta_info_Vimeo90K_test_GT.txt)")
    spec = {"type": test_set.dataset_type, "dataroot_gt": str(gt), "dataroot_lq": str(lq),
            "io_backend": {"type": "disk"}, "scale": scale}
    if meta is not None:
        spec["meta_info_file"] = str(meta)
    return FoundTestSet(test_set, spec, None)


def find_test_sets(root: str | Path, scale: int = 4, only: list[str] | None = None) -> list[FoundTestSet]:
    """Every standard set (or those keyed in `only`), in the published column order."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: test-set root does not exist or is not a folder")
    known = {t.key: t for t in STANDARD_TEST_SETS}
    for key in only or []:
        if key not in known:
            raise ConfigError(f"test set '{key}': unknown (known: {', '.join(known)})")
    chosen = [t for t in STANDARD_TEST_SETS if not only or t.key in only]
    return [locate(t, root, scale) for t in chosen]
