"""How a test set is scored: the one type `datasets/test_sets.py` needs from the core, kept on its
own so that naming a protocol pulls in no metric, model or inference code."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Protocol:
    """How a test set is scored, in BasicSR's option names: `val.metrics.*.test_y_channel`,
    `val.metrics.*.crop_border`, `val.center_frame_only` and `val.flip_seq`."""
    test_y_channel: bool = False
    crop_border: int = 0
    center_frame_only: bool = False
    flip_seq: bool = False

    def describe(self) -> str:
        """E.g. 'Y, crop 0, centre frame, flip' or 'RGB, crop 0, all frames'."""
        parts = ["Y" if self.test_y_channel else "RGB", f"crop {self.crop_border}"]
        parts.append("centre frame" if self.center_frame_only else "all frames")
        if self.flip_seq:
            parts.append("flip")
        return ", ".join(parts)
