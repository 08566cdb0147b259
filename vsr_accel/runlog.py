"""Console progress lines, a plain-text log file and tensorboard scalars (rank 0 only)."""
from __future__ import annotations

import time
from pathlib import Path


class RunLogger:
    def __init__(self, log_file: Path, tb_dir: Path | None, enabled: bool = True):
        self.enabled = enabled
        self.start = time.perf_counter()
        self.file = open(log_file, "a", buffering=1) if enabled else None
        self.tb = None
        if enabled and tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: tensorboard is slow to import
            self.tb = SummaryWriter(str(tb_dir))

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        self.file.write(line + "\n")

    def step(self, it: int, total: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        self.info(f"iter {it:>7d}/{total} | loss {scalars['loss']:.5f} | lr {scalars['lr']:.3e} | "
                  f"{scalars['samples_per_s']:.2f} samples/s | data wait {100 * scalars['data_wait_frac']:.1f}% | "
                  f"stage {scalars['stage']} (LR crop {scalars['lr_crop']}, {scalars['frames']} frames) | "
                  f"{elapsed / 60:.1f} min")
        if self.tb is not None:
            for key, value in scalars.items():
                self.tb.add_scalar(f"train/{key}", value, it)

    def val(self, it: int, scores: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.info(f"val @ {it}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        if self.tb is not None:
            for key, value in scores.items():
                self.tb.add_scalar(f"val/{key}", value, it)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.file is not None:
            self.file.close()
