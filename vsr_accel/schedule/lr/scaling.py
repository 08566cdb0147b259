"""The linear scaling rule (Goyal et al. 2017; paper Sec. 3.2, Table 4): when the global batch
grows k times, the LR grows k times, so k small steps and one large step move the weights about
equally. BasicVSR-M: 2e-4 at batch 16 becomes 8e-4 at batch 64."""
from __future__ import annotations


def scaled_lr(base_lr: float, global_batch: int, base_batch: int) -> float:
    """LR for `global_batch` samples per optimizer step, given `base_lr` tuned at `base_batch`."""
    if global_batch <= 0 or base_batch <= 0:
        raise ValueError(f"batch sizes must be positive, got global {global_batch}, base {base_batch}")
    return base_lr * global_batch / base_batch
