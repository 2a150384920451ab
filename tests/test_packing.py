"""Batch composition and packing: which samples form a step never depends on micro-batch size, world size or packing."""

import numpy as np
import pytest
import torch

from rtrain.data.batching import IGNORE, StepPlanner, collate, pack_decreasing


def planner(**kw):
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 500, size=103)
    base = dict(lengths=lengths, loss_tokens=lengths // 2, global_batch_size=16, world_size=1, seed=3,
                packing=False, micro_batch_size=4, capacity_tokens=1024)
    base.update(kw)
    return StepPlanner(**base)


@pytest.mark.parametrize("other", [dict(micro_batch_size=1), dict(world_size=2), dict(world_size=4, packing=True),
                                   dict(packing=True, capacity_tokens=600)])
def test_step_samples_independent_of_layout(other):
    a, b = planner(), planner(**other)
    for step in range(0, 20):
        sa, sb = a.step_samples(step), b.step_samples(step)
        assert sa.tolist() == sb.tolist()
        flat = sorted(i for rank in b.split(sb) for mb in rank for i in mb)
        assert flat == sorted(sa.tolist())  # every sample of the step exactly once, across ranks and micro-batches


def test_epochs_reshuffle_and_cover():
    p = planner()
    assert p.steps_per_epoch == 103 // 16
    e0 = np.concatenate([p.step_samples(s) for s in range(p.steps_per_epoch)])
    e1 = np.concatenate([p.step_samples(s) for s in range(p.steps_per_epoch, 2 * p.steps_per_epoch)])
    assert len(set(e0.tolist())) == len(e0)  # no repeats within an epoch
    assert e0.tolist() != e1.tolist()  # epoch 1 is not a replay of epoch 0
    assert planner(seed=4).step_samples(0).tolist() != p.step_samples(0).tolist()


@pytest.mark.parametrize("best_fit", [False, True])
def test_decreasing_bins_respect_capacity(best_fit):
    lengths = [500, 400, 300, 300, 200, 100, 100, 50]
    bins = pack_decreasing(lengths, 600, best_fit=best_fit)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 600 for b in bins)
    assert len(bins) == 4  # 1950 tokens need at least 4 bins of 600
    with pytest.raises(ValueError, match="exceeds the bin capacity"):
        pack_decreasing([700], 600)


def test_packed_collate_restarts_positions_and_masks_boundaries():
    samples = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4, 5], "labels": [-100, 5]}]
    b = collate(samples, packing=True, pad_id=0, capacity_tokens=8)
    assert b["input_ids"].tolist() == [[1, 2, 3, 4, 5]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    # targets[t] = label of t+1 within the sample; the last token of each sample predicts nothing
    assert b["targets"].tolist() == [[2, 3, IGNORE, 5, IGNORE]]
    assert b["cu_seqlens"].tolist() == [0, 3, 5]
    assert b["num_real_tokens"] == 5 and b["num_slots"] == 8
    assert "attention_mask" not in b


def test_padded_collate():
    samples = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4, 5], "labels": [-100, 5]}]
    b = collate(samples, packing=False, pad_id=9)
    assert b["input_ids"].tolist() == [[1, 2, 3], [4, 5, 9]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert b["targets"].tolist() == [[2, 3, IGNORE], [5, IGNORE, IGNORE]]
    assert b["num_slots"] == 6
    empty = collate([], packing=True, pad_id=9)
    assert (empty["targets"] == IGNORE).all() and empty["num_real_tokens"] == 0
    assert isinstance(empty["input_ids"], torch.Tensor)
