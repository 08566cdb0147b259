"""One batch sampler for the whole multigrid run: every batch carries its training shape.

Each micro-step yields a list of `ItemRequest(index, lr_crop, num_frames, seed)`
(`vsr_accel.core.item_request`); the dataset crops `index` to that shape and draws its crop
position/flips from `seed`. So data workers
hold no shared state, one DataLoader (`batch_sampler=...`) serves every stage, and a shape change
needs no rebuild. All items of one micro-step share a shape, so the default collate stacks them.

The data order is one global stream: epoch e is a permutation of the dataset drawn from a private
`torch.Generator` seeded by (seed, e) -- the global RNG is never touched. Training iteration t's
global batch (batch_per_device x world_size x grad_accum samples, of stage_at(t)) is the next
stretch of that stream; accumulation micro-step a of it is the a-th chunk of
batch_per_device x world_size samples, and rank r takes the r-th contiguous slice of each chunk.
Shapes therefore depend only on (schedule, t) and agree on every rank, and ranks never share an
index within a step.

drop_last=True (default, like BasicSR's loader): a global batch never spans two epochs; the tail
of an epoch too short for the next global batch is skipped, so no clip appears twice in a step.
drop_last=False: the stream is the plain concatenation of the permutations, every clip of every
epoch is used, and a step that spans an epoch end may repeat a clip.

An item's seed (`item_seed`) is a function of (the run's seed, global sample number), the count of
samples drawn before it in the run, so it is the same however workers/ranks are arranged and after
a resume.

Iteration bookkeeping: the sampler does not report which iteration a batch belongs to, because
DataLoader workers prefetch batches ahead of the training loop. The trainer counts iterations
(`grad_accum` batches each) and passes its count to `state_dict(next_iter)` when checkpointing.
On resume, `load_state_dict(state)` moves the start in O(stages) arithmetic, replaying no data;
world_size / grad_accum may even change, since the state records where in the stream the run
stopped. Iterating the sampler again starts again at the start iteration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import torch
from torch.utils.data import Sampler

from vsr_accel.core.checks import is_int
from vsr_accel.core.errors import CheckpointError, ConfigError, DataError
from vsr_accel.core.item_request import ItemRequest
from vsr_accel.schedule.curriculum import Schedule, global_batch

_MASK64 = (1 << 64) - 1
_STATE_KEYS = ("next_iter", "consumed", "epoch", "offset", "seed", "dataset_len", "drop_last")
_SETTINGS_DEFAULTS = {"enlarge_ratio": 1, "shuffle": True}  # recorded since these became options


def _splitmix64(value: int) -> int:
    # A standard 64-bit mixer: nearby inputs (seed, seed+1, epoch+1) give unrelated outputs.
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def item_seed(seed: int, sample_number: int) -> int:
    """Seed (in [0, 2**63)) for the random crop/flip of the run's `sample_number`-th sample;
    feed it to e.g. `numpy.random.default_rng(item_seed)` or `random.Random(item_seed)`."""
    return _splitmix64(_splitmix64(seed & _MASK64) ^ sample_number) >> 1


def epoch_permutation(seed: int, epoch: int, dataset_len: int, enlarge_ratio: int = 1,
                      shuffle: bool = True) -> list[int]:
    """The order of epoch `epoch`, from a private generator (never the global torch RNG).

    BasicSR's `dataset_enlarge_ratio` (its EnlargedSampler): an epoch is a permutation of
    dataset_len x ratio positions, each taken modulo dataset_len, so every clip appears `ratio`
    times per epoch in random places. `use_shuffle: false` keeps the positions in order."""
    size = dataset_len * enlarge_ratio
    if not shuffle:
        return [v % dataset_len for v in range(size)]
    generator = torch.Generator()
    generator.manual_seed(_splitmix64(_splitmix64((seed & _MASK64) ^ 0x5EED) + epoch) >> 1)
    return [v % dataset_len for v in torch.randperm(size, generator=generator).tolist()]


@dataclass(frozen=True)
class StreamCursor:
    """Where the next global batch starts: `consumed` samples drawn so far in the run, and the
    position (`epoch`, `offset`) in the stream of epoch permutations."""

    consumed: int
    epoch: int
    offset: int


class MultigridBatchSampler(Sampler[list[ItemRequest]]):
    """Batches of `ItemRequest`s following a curriculum `Schedule`, for one rank."""

    def __init__(self, schedule: Schedule, dataset_len: int, *, rank: int = 0, world_size: int = 1,
                 grad_accum: int = 1, seed: int = 0, drop_last: bool = True, enlarge_ratio: int = 1,
                 shuffle: bool = True) -> None:
        super().__init__()
        if not is_int(dataset_len) or dataset_len <= 0:
            raise DataError(f"the training dataset is empty (len = {dataset_len!r}); check its dataroot and meta info")
        if world_size <= 0 or grad_accum <= 0 or not 0 <= rank < world_size:
            raise ValueError(f"bad distributed geometry: rank {rank}, world_size {world_size}, grad_accum {grad_accum}")
        self.schedule = schedule
        self.dataset_len = dataset_len
        self.rank = rank
        self.world_size = world_size
        self.grad_accum = grad_accum
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.enlarge_ratio = int(enlarge_ratio)
        self.shuffle = bool(shuffle)
        self.epoch_len = dataset_len * self.enlarge_ratio  # positions per epoch of the stream
        if self.drop_last:
            for stage in schedule.stages:
                batch = global_batch(stage.batch_per_device, world_size, grad_accum)
                if batch > self.epoch_len:
                    raise ConfigError(
                        f"the dataset has {dataset_len} clips, fewer than the global batch {batch} of curriculum "
                        f"stage {stage.index + 1} ({stage.batch_per_device} per device x {world_size} devices x "
                        f"{grad_accum} accumulation steps); use a smaller batch or more clips")
        # Positions are computed from an anchor: iteration 0, or the point a checkpoint recorded.
        self._anchor_iter = 0
        self._anchor = StreamCursor(consumed=0, epoch=0, offset=0)
        self._permutations: dict[int, list[int]] = {}

    # -- positions ---------------------------------------------------------------------------

    def _advance(self, cursor: StreamCursor, steps: int, batch: int) -> StreamCursor:
        """Cursor after `steps` global batches of `batch` samples, in O(1)."""
        if steps == 0:
            return cursor
        consumed = cursor.consumed + steps * batch
        n = self.epoch_len
        if not self.drop_last:
            position = cursor.epoch * n + cursor.offset + steps * batch
            return StreamCursor(consumed, position // n, position % n)
        fit = (n - cursor.offset) // batch  # batches that still fit in the current epoch
        if steps <= fit:
            return StreamCursor(consumed, cursor.epoch, cursor.offset + steps * batch)
        per_epoch = n // batch
        rest = steps - fit  # these start at the beginning of the next epoch
        return StreamCursor(consumed, cursor.epoch + 1 + (rest - 1) // per_epoch,
                            ((rest - 1) % per_epoch + 1) * batch)

    def _batch_start(self, cursor: StreamCursor, batch: int) -> StreamCursor:
        """Move to the next epoch when the batch would not fit (drop_last) or the epoch is used up."""
        if self.drop_last and cursor.offset + batch > self.epoch_len:
            return StreamCursor(cursor.consumed, cursor.epoch + 1, 0)
        if cursor.offset >= self.epoch_len:
            return StreamCursor(cursor.consumed, cursor.epoch + cursor.offset // self.epoch_len,
                                cursor.offset % self.epoch_len)
        return cursor

    def cursor_at(self, t: int) -> StreamCursor:
        """Stream position where iteration t starts (anchor_iter <= t <= total_iter), O(stages)."""
        if not self._anchor_iter <= t <= self.schedule.total_iter:
            raise ValueError(f"iteration {t} is outside [{self._anchor_iter}, {self.schedule.total_iter}]")
        cursor = self._anchor
        for stage in self.schedule.stages:
            steps = min(t, stage.end_iter) - max(self._anchor_iter, stage.start_iter)
            if steps > 0:
                cursor = self._advance(cursor, steps, global_batch(stage.batch_per_device, self.world_size,
                                                                    self.grad_accum))
        return cursor

    # -- resume ------------------------------------------------------------------------------

    @property
    def start_iter(self) -> int:
        """The iteration iterating starts at: 0, or where the loaded state was taken."""
        return self._anchor_iter

    def state_dict(self, next_iter: int) -> dict[str, Any]:
        """What a checkpoint needs to resume at `next_iter` (the trainer's count of finished
        iterations), including the stream position so that resuming may change world_size."""
        cursor = self.cursor_at(next_iter)
        return {"next_iter": next_iter, "consumed": cursor.consumed, "epoch": cursor.epoch, "offset": cursor.offset,
                "seed": self.seed, "dataset_len": self.dataset_len, "drop_last": self.drop_last,
                "enlarge_ratio": self.enlarge_ratio, "shuffle": self.shuffle}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume where `state_dict(next_iter)` was taken; the next iteration starts there."""
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise CheckpointError(f"sampler state in the checkpoint lacks {', '.join(missing)}")
        for key, own in (("seed", self.seed), ("dataset_len", self.dataset_len), ("drop_last", self.drop_last),
                         ("enlarge_ratio", self.enlarge_ratio), ("shuffle", self.shuffle)):
            if state.get(key, _SETTINGS_DEFAULTS.get(key)) != own:
                raise CheckpointError(f"sampler state: the checkpoint was trained with {key}={state[key]!r}, this run "
                                      f"has {key}={own!r}; resume with the same setting")
        next_iter = int(state["next_iter"])
        if not 0 <= next_iter <= self.schedule.total_iter:
            raise CheckpointError(f"sampler state: the checkpoint is at iteration {next_iter}, outside this "
                                  f"curriculum's {self.schedule.total_iter} iterations")
        self._anchor_iter = next_iter
        self._anchor = StreamCursor(int(state["consumed"]), int(state["epoch"]), int(state["offset"]))

    # -- iteration ---------------------------------------------------------------------------

    def __len__(self) -> int:
        """Micro-steps left from the start iteration to the end of the run."""
        return (self.schedule.total_iter - self.start_iter) * self.grad_accum

    def _index_at(self, position: int) -> int:
        epoch, offset = divmod(position, self.epoch_len)
        order = self._permutations.get(epoch)
        if order is None:
            self._permutations = {e: p for e, p in self._permutations.items() if e == epoch - 1}
            order = self._permutations[epoch] = epoch_permutation(self.seed, epoch, self.dataset_len,
                                                                  self.enlarge_ratio, self.shuffle)
        return order[offset]

    def __iter__(self) -> Iterator[list[ItemRequest]]:
        cursor = self.cursor_at(self.start_iter)
        for stage in self.schedule.stages:
            if stage.end_iter <= self.start_iter:
                continue
            per_device = stage.batch_per_device
            chunk = per_device * self.world_size  # one accumulation micro-step over all ranks
            batch = global_batch(per_device, self.world_size, self.grad_accum)
            for _ in range(max(stage.start_iter, self.start_iter), stage.end_iter):
                cursor = self._batch_start(cursor, batch)
                stream_start = cursor.epoch * self.epoch_len + cursor.offset
                for micro in range(self.grad_accum):
                    first = micro * chunk + self.rank * per_device
                    yield [ItemRequest(self._index_at(stream_start + k), stage.lr_crop, stage.num_frames,
                                       item_seed(self.seed, cursor.consumed + k))
                           for k in range(first, first + per_device)]
                cursor = StreamCursor(cursor.consumed + batch, cursor.epoch, cursor.offset + batch)
