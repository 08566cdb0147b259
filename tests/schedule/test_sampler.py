"""The multigrid batch sampler: shapes per step, rank disjointness, epoch coverage, resume."""
from __future__ import annotations

import pickle
import random

import pytest
import torch

from vsr_accel.schedule.curriculum import build_schedule
from vsr_accel.core.errors import CheckpointError, ConfigError, DataError
from vsr_accel.core.item_request import ItemRequest
from vsr_accel.schedule.sampler import MultigridBatchSampler, StreamCursor, epoch_permutation, item_seed


def six_stage(total_iter=12, batch=2, **kwargs):
    return build_schedule("multigrid", total_iter, 64, 15, batch, **kwargs)


def steps(sampler: MultigridBatchSampler, grad_accum: int = 1) -> list[list[list[ItemRequest]]]:
    """Group the micro-step batches of an iteration together."""
    batches = list(sampler)
    return [batches[i:i + grad_accum] for i in range(0, len(batches), grad_accum)]


def test_two_ranks_share_shapes_and_split_indices_covering_each_epoch():
    schedule = six_stage(total_iter=12, batch=2)
    n = 8  # global batch 4 -> two steps per epoch
    ranks = [MultigridBatchSampler(schedule, n, rank=r, world_size=2, seed=3) for r in range(2)]
    per_rank = [list(sampler) for sampler in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) == 12
    for t, (mine, theirs) in enumerate(zip(*per_rank)):
        stage = schedule.stage_at(t)
        shapes = {(k.lr_crop, k.num_frames) for k in mine + theirs}
        assert shapes == {(stage.lr_crop, stage.num_frames)}
        assert len(mine) == len(theirs) == 2
        assert not {k.index for k in mine} & {k.index for k in theirs}
    for epoch in range(6):
        seen = [k.index for t in (2 * epoch, 2 * epoch + 1) for rank in per_rank for k in rank[t]]
        assert sorted(seen) == list(range(n))
    # epochs are reshuffled
    assert [k.index for k in per_rank[0][0]] != [k.index for k in per_rank[0][2]] or \
           [k.index for k in per_rank[1][0]] != [k.index for k in per_rank[1][2]]


def test_cursor_counts_global_samples_with_per_stage_batches():
    schedule = build_schedule("multigrid", 60, 64, 15, 4, stage_batches=[8, 8, 8, 4, 4, 4])
    # stage iters are 10 each; a global batch is batch x world_size 2 x grad_accum 3.
    sampler = MultigridBatchSampler(schedule, 10**6, world_size=2, grad_accum=3)
    assert sampler.cursor_at(0).consumed == 0
    assert sampler.cursor_at(15).consumed == 10 * 48 + 5 * 48
    assert sampler.cursor_at(35).consumed == 30 * 48 + 5 * 24
    assert sampler.cursor_at(60).consumed == 30 * 48 + 30 * 24
    assert MultigridBatchSampler(schedule, 10**6).cursor_at(7).consumed == 7 * 8


def test_global_stream_does_not_depend_on_how_ranks_and_accumulation_split_it():
    # 8 samples per step either as one device, or 2 ranks x 2 micro-steps x 2 samples.
    single = MultigridBatchSampler(six_stage(batch=8), 20, seed=5, drop_last=False)
    split = [MultigridBatchSampler(six_stage(batch=2), 20, rank=r, world_size=2, grad_accum=2, seed=5,
                                   drop_last=False) for r in range(2)]
    reference = steps(single)
    per_rank = [steps(sampler, grad_accum=2) for sampler in split]
    assert len(split[0]) == 24
    for t, (whole,) in enumerate(reference):
        rebuilt = [key for micro in range(2) for rank in range(2) for key in per_rank[rank][t][micro]]
        assert rebuilt == whole
        shapes = {(k.lr_crop, k.num_frames) for micro in per_rank[0][t] + per_rank[1][t] for k in micro}
        assert len(shapes) == 1  # all micro-steps of an iteration use the same shape


def test_drop_last_false_uses_every_clip_of_every_epoch_in_order():
    schedule = six_stage(total_iter=12, batch=1, stage_batches=[3, 3, 5, 5, 2, 2])
    sampler = MultigridBatchSampler(schedule, 7, seed=1, drop_last=False)
    flat = [k.index for batch in sampler for k in batch]
    assert len(flat) == sampler.cursor_at(12).consumed == 2 * (3 + 3 + 5 + 5 + 2 + 2)
    for epoch in range(len(flat) // 7):
        assert flat[7 * epoch:7 * epoch + 7] == epoch_permutation(1, epoch, 7)


def test_drop_last_true_never_repeats_a_clip_within_a_step_and_skips_epoch_tails():
    schedule = six_stage(total_iter=12, batch=1, stage_batches=[3, 3, 5, 5, 2, 2])
    sampler = MultigridBatchSampler(schedule, 7, seed=1)
    batches = list(sampler)
    for batch in batches:
        assert len({k.index for k in batch}) == len(batch)
    # each epoch of 7 holds two batches of 3 (one clip skipped); a batch of 5 then opens a new epoch
    assert [k.index for k in batches[0] + batches[1]] == epoch_permutation(1, 0, 7)[:6]
    assert [k.index for k in batches[2] + batches[3]] == epoch_permutation(1, 1, 7)[:6]
    assert [k.index for k in batches[4]] == epoch_permutation(1, 2, 7)[:5]
    assert [k.index for k in batches[5]] == epoch_permutation(1, 3, 7)[:5]
    # the first batch of 2 still fits in the tail of epoch 5 (after a batch of 5 at offset 0)
    assert [k.index for k in batches[7] + batches[8]] == epoch_permutation(1, 5, 7)
    assert [k.index for k in batches[9] + batches[10] + batches[11]] == epoch_permutation(1, 6, 7)[:6]


def _simulate(schedule, n, world_size, grad_accum, drop_last, t):
    """Step-by-step reference for the sampler's closed-form position arithmetic."""
    consumed, position = 0, 0
    for step in range(t):
        batch = schedule.stage_at(step).batch_per_device * world_size * grad_accum
        if drop_last and position % n + batch > n:
            position += n - position % n
        position += batch
        consumed += batch
    return consumed, position


@pytest.mark.parametrize("drop_last", [True, False])
def test_closed_form_positions_match_a_step_by_step_simulation(drop_last):
    rng = random.Random(0)
    for _ in range(30):
        batches = [rng.randint(1, 5) for _ in range(6)]
        n = rng.randint(max(batches) * 2, 40)
        schedule = six_stage(total_iter=rng.randint(6, 60), stage_batches=batches)
        sampler = MultigridBatchSampler(schedule, n, world_size=2, drop_last=drop_last)
        for t in range(schedule.total_iter + 1):
            cursor = sampler.cursor_at(t)
            consumed, position = _simulate(schedule, n, 2, 1, drop_last, t)
            assert cursor.consumed == consumed
            # (e, n) and (e + 1, 0) are the same place: the next batch starts a new epoch either way
            assert cursor.epoch * n + cursor.offset == position


@pytest.mark.parametrize("drop_last", [True, False])
def test_resume_mid_stage_from_state_dict_yields_the_same_next_batches(drop_last):
    schedule = six_stage(total_iter=18, batch=3)  # stages of 3 iterations
    make = lambda: MultigridBatchSampler(schedule, 13, rank=1, world_size=2, grad_accum=2, seed=7,  # noqa: E731
                                         drop_last=drop_last)
    uninterrupted = list(make())
    interrupted = make()
    consumed_batches = []
    for batch in interrupted:
        consumed_batches.append(batch)
        if len(consumed_batches) == 2 * 7:  # stop after iteration 6, i.e. inside stage 3
            break
    state = interrupted.state_dict(next_iter=7)
    assert state["next_iter"] == 7 and state["consumed"] == 7 * 3 * 2 * 2  # 7 global batches of 3 x 2 ranks x 2
    resumed = make()
    resumed.load_state_dict(pickle.loads(pickle.dumps(state)))
    assert len(resumed) == len(uninterrupted) - 14
    assert list(resumed) == uninterrupted[14:]
    restarted = make()  # the same position from arithmetic alone, without iterating first
    restarted.load_state_dict(make().state_dict(next_iter=7))
    assert list(restarted) == uninterrupted[14:]


def test_resume_with_fewer_devices_continues_the_same_stream():
    schedule = six_stage(total_iter=12, batch=2)
    two_ranks = [MultigridBatchSampler(schedule, 9, rank=r, world_size=2, seed=2, drop_last=False) for r in range(2)]
    stream = [k for t in zip(*(list(s) for s in two_ranks)) for batch in t for k in batch]
    state = two_ranks[0].state_dict(next_iter=5)
    one_rank = MultigridBatchSampler(schedule, 9, world_size=1, seed=2, drop_last=False)
    one_rank.load_state_dict(state)
    flat = [k for batch in one_rank for k in batch]
    start = state["consumed"]
    # same clips and crop seeds; the shapes follow the iteration, which now holds fewer samples
    assert [k[::3] for k in flat] == [k[::3] for k in stream[start:start + len(flat)]]
    assert len(flat) == 7 * 2  # 7 iterations left, 2 samples each on one device


def test_item_seeds_follow_the_global_sample_number():
    sampler = MultigridBatchSampler(six_stage(total_iter=6, batch=2), 5, rank=1, world_size=2, seed=11)
    batches = list(sampler)
    # rank 1 holds samples 2, 3 of each 4-sample step
    assert [k.seed for k in batches[1]] == [item_seed(11, 6), item_seed(11, 7)]
    seeds = [k.seed for batch in batches for k in batch]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2 ** 63 for s in seeds)
    assert item_seed(11, 6) != item_seed(12, 6)


def test_exact_len_and_grad_accum_structure():
    schedule = six_stage(total_iter=12, batch=2)
    sampler = MultigridBatchSampler(schedule, 100, rank=0, world_size=3, grad_accum=4)
    assert len(sampler) == 48
    batches = list(sampler)
    assert len(batches) == 48 and all(len(batch) == 2 for batch in batches)
    for t in range(12):
        stage = schedule.stage_at(t)
        assert all((k.lr_crop, k.num_frames) == (stage.lr_crop, stage.num_frames)
                   for batch in batches[4 * t:4 * t + 4] for k in batch)
    sampler.load_state_dict(sampler.state_dict(next_iter=10))
    assert len(sampler) == len(list(sampler)) == 8


def test_per_stage_batches_change_the_batch_length():
    schedule = build_schedule("spatial", 4, 64, 15, 4, stage_batches=[6, 2])
    assert [len(b) for b in MultigridBatchSampler(schedule, 50)] == [6, 6, 2, 2]


def test_sampler_never_touches_the_global_rngs():
    torch.manual_seed(123)
    random.seed(123)
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    sampler = MultigridBatchSampler(six_stage(total_iter=12, batch=2), 7, seed=0)
    list(sampler)
    sampler.load_state_dict(sampler.state_dict(next_iter=5))
    list(sampler)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == python_state


def test_same_seed_same_order_other_seed_other_order():
    schedule = six_stage(total_iter=12, batch=2)
    first = list(MultigridBatchSampler(schedule, 40, seed=0))
    assert first == list(MultigridBatchSampler(schedule, 40, seed=0))
    other = MultigridBatchSampler(schedule, 40, seed=1)
    assert [k.index for b in first for k in b] != [k.index for b in other for k in b]


def test_one_dataloader_serves_every_stage():
    class ShapeDataset(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, key):
            index, lr_crop, num_frames, seed = key
            return {"lq": torch.full((num_frames, 3, lr_crop, lr_crop), float(index)), "seed": seed}

    schedule = build_schedule("multigrid", 6, 8, 4, 2, lr_crops=[4, 8], frame_counts=[2, 3, 4])
    loader = torch.utils.data.DataLoader(ShapeDataset(), batch_sampler=MultigridBatchSampler(schedule, 6))
    shapes = [tuple(batch["lq"].shape) for batch in loader]
    assert shapes == [(2, 2, 3, 4, 4), (2, 3, 3, 4, 4), (2, 4, 3, 4, 4), (2, 2, 3, 8, 8), (2, 3, 3, 8, 8),
                      (2, 4, 3, 8, 8)]


def test_bad_setups_and_mismatched_states():
    schedule = six_stage(total_iter=12, batch=4)
    with pytest.raises(DataError, match="empty"):
        MultigridBatchSampler(schedule, 0)
    with pytest.raises(ConfigError, match="fewer than the global batch 8"):
        MultigridBatchSampler(schedule, 7, world_size=2)
    MultigridBatchSampler(schedule, 7, world_size=2, drop_last=False)  # repeats are allowed then
    with pytest.raises(ValueError):
        MultigridBatchSampler(schedule, 20, rank=2, world_size=2)
    state = MultigridBatchSampler(schedule, 20, seed=1).state_dict(next_iter=3)
    for key, value, error in (("seed", 2, "seed=1"), ("dataset_len", 30, "dataset_len=20")):
        with pytest.raises(CheckpointError, match=error):
            MultigridBatchSampler(schedule, value if key == "dataset_len" else 20,
                                  seed=value if key == "seed" else 1).load_state_dict(state)
    with pytest.raises(CheckpointError, match="lacks consumed"):
        MultigridBatchSampler(schedule, 20, seed=1).load_state_dict({k: v for k, v in state.items() if k != "consumed"})
    with pytest.raises(CheckpointError, match="iteration 13"):
        MultigridBatchSampler(schedule, 20, seed=1).load_state_dict({**state, "next_iter": 13})
    resumed = MultigridBatchSampler(schedule, 20, seed=1)
    resumed.load_state_dict(state)
    with pytest.raises(ValueError):
        resumed.state_dict(next_iter=2)  # before the checkpoint: unknown history
    assert resumed.cursor_at(3) == StreamCursor(state["consumed"], state["epoch"], state["offset"])


def test_dataset_enlarge_ratio_repeats_every_clip_within_an_epoch_like_basicsr():
    """BasicSR's EnlargedSampler: an epoch is a permutation of len x ratio positions modulo len."""
    schedule = build_schedule("none", 6, 8, 3, 2)
    sampler = MultigridBatchSampler(schedule, 5, enlarge_ratio=2, seed=4)
    indices = [key.index for batch in sampler for key in batch][:10]  # one epoch: 10 positions, 5 batches
    assert sorted(indices) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    plain = [key.index for batch in MultigridBatchSampler(schedule, 5, seed=4) for key in batch]
    assert indices != plain[:10]


def test_use_shuffle_false_keeps_the_dataset_order():
    schedule = build_schedule("none", 4, 8, 3, 2)
    sampler = MultigridBatchSampler(schedule, 4, shuffle=False)
    assert [[key.index for key in batch] for batch in sampler] == [[0, 1], [2, 3], [0, 1], [2, 3]]


def test_resume_refuses_another_enlarge_ratio_and_continues_with_the_same():
    schedule = build_schedule("none", 8, 8, 3, 2)
    whole = [[k.index for k in b] for b in MultigridBatchSampler(schedule, 5, enlarge_ratio=3, seed=1)]
    first = MultigridBatchSampler(schedule, 5, enlarge_ratio=3, seed=1)
    resumed = MultigridBatchSampler(schedule, 5, enlarge_ratio=3, seed=1)
    resumed.load_state_dict(first.state_dict(next_iter=5))
    assert [[k.index for k in b] for b in resumed] == whole[5:]
    other = MultigridBatchSampler(schedule, 5, enlarge_ratio=1, seed=1)
    with pytest.raises(CheckpointError, match="enlarge_ratio=3"):
        other.load_state_dict(first.state_dict(next_iter=5))
