"""AdamW parameter groups and the learning-rate schedule, as pure functions of the step.

Schedule (``scheduler.name=cosine``): optimizer step ``s`` (0-based) of ``total_steps`` uses

* warmup, ``s < W``: ``lr * (s + 1) / W`` (the first step already learns, unlike HF's ``s / W``);
* decay, ``s >= W``: ``lr_min + (lr - lr_min) * (1 + cos(pi * (s - W) / (total_steps - 1 - W))) / 2``,
  so the peak is at step W and ``lr_min = lr * min_lr_ratio`` at the last step.

``W = warmup_steps`` when set, else ``ceil(warmup_ratio * total_steps)``. ``scheduler.name=constant`` keeps the
peak after warmup.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rtrain.config import OptimizerConfig, SchedulerConfig


def warmup_steps_for(cfg: SchedulerConfig, total_steps: int) -> int:
    if cfg.warmup_steps is not None and cfg.warmup_steps >= 0:
        return min(cfg.warmup_steps, total_steps)
    return min(math.ceil(cfg.warmup_ratio * total_steps), total_steps)


def lr_at(step: int, *, peak_lr: float, total_steps: int, warmup_steps: int, min_lr_ratio: float = 0.0,
          schedule: str = "cosine") -> float:
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak_lr
    if schedule != "cosine":
        raise ValueError(f"scheduler.name={schedule!r}: use cosine or constant")
    decay_steps = total_steps - 1 - warmup_steps
    if decay_steps <= 0:
        return peak_lr
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    min_lr = peak_lr * min_lr_ratio
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, cfg: OptimizerConfig) -> list[dict]:
    """Two groups: decayed matrices, and undecayed parameters whose name matches ``no_decay`` (or 1-D ones)."""
    decay, no_decay = [], []
    patterns = [p.lower() for p in cfg.no_decay]
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        ndim = len(getattr(p, "ds_shape", p.shape))  # ZeRO-3 partitioned parameters are flat shards
        skip = any(pattern in name.lower() for pattern in patterns) or ndim < 2
        (no_decay if skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: OptimizerConfig, device: torch.device) -> torch.optim.Optimizer:
    if cfg.name != "adamw":
        raise ValueError(f"optimizer.name={cfg.name!r}: rtrain provides adamw")
    return torch.optim.AdamW(
        param_groups(model, cfg), lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), eps=cfg.eps,
        # foreach on CPU, fused kernels on GPU; both are the same AdamW math.
        fused=device.type == "cuda" or None,
    )
