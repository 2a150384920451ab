"""The learning-rate schedule at its boundaries, and the AdamW no-decay groups."""

import math

import pytest
import torch

from rtrain.config import OptimizerConfig, SchedulerConfig
from rtrain.optim import lr_at, param_groups, warmup_steps_for


def test_warmup_rises_linearly_to_peak():
    kw = dict(peak_lr=1.0, total_steps=100, warmup_steps=10)
    assert lr_at(0, **kw) == pytest.approx(0.1)  # the first step already learns
    assert lr_at(4, **kw) == pytest.approx(0.5)
    assert lr_at(9, **kw) == pytest.approx(1.0)  # last warmup step reaches the peak


def test_cosine_peak_middle_and_end():
    kw = dict(peak_lr=2.0, total_steps=102, warmup_steps=11, min_lr_ratio=0.1)
    assert lr_at(11, **kw) == pytest.approx(2.0)  # decay starts at the peak
    assert lr_at(56, **kw) == pytest.approx(0.2 + 1.8 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(101, **kw) == pytest.approx(0.2)  # the last step is at lr * min_lr_ratio
    values = [lr_at(s, **kw) for s in range(11, 102)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_no_warmup_and_constant():
    assert lr_at(0, peak_lr=1.0, total_steps=10, warmup_steps=0) == pytest.approx(1.0)
    assert lr_at(9, peak_lr=1.0, total_steps=10, warmup_steps=0) == pytest.approx(0.0)
    assert lr_at(7, peak_lr=1.0, total_steps=10, warmup_steps=2, schedule="constant") == 1.0


def test_warmup_steps_from_ratio_and_override():
    assert warmup_steps_for(SchedulerConfig(warmup_ratio=0.1), 510) == 51  # Sky-T1: ceil(0.1 * 510)
    assert warmup_steps_for(SchedulerConfig(warmup_ratio=0.1), 7) == 1
    assert warmup_steps_for(SchedulerConfig(warmup_ratio=0.1, warmup_steps=5), 100) == 5


def test_no_decay_groups_for_norms_and_biases():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    groups = param_groups(model, OptimizerConfig(weight_decay=0.1))
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert decayed == {id(model[0].weight)}
    assert len(groups[1]["params"]) == 3  # linear bias, norm weight, norm bias
