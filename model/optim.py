"""Optimizers and the learning-rate schedule.

The library's `torch.optim.Muon` (orthogonalized momentum) trains the hidden 2-D weight matrices;
AdamW trains everything else: token embeddings, the head, the TripletEncoder's tables and gates,
and scalars (`GPT.param_groups()` says which is which). The schedule is nanochat's: linear warmup,
a constant stretch, then a linear warmdown to `FINAL_LR_FRAC` of the peak.

    optimizers = build_optimizers(model, cfg.train)
    for step in range(total):
        set_learning_rates(optimizers, lr_multiplier(step, total, warmup_steps, warmdown_frac))
"""
from __future__ import annotations

import math

import torch

from configs.schema import TrainConfig

FINAL_LR_FRAC = 0.05  # the warmdown ends at 5 % of the peak rate
ADAM_BETAS = (0.8, 0.95)  # nanochat's AdamW betas for embeddings and head


def build_optimizers(model: torch.nn.Module, train: TrainConfig) -> list[torch.optim.Optimizer]:
    """[Muon over the hidden matrices, AdamW over the rest]; each group remembers `initial_lr`."""
    groups = model.param_groups()
    matrices = groups.pop("matrix")
    others = [p for params in groups.values() for p in params]
    bad = [tuple(p.shape) for p in matrices if p.ndim != 2]
    if bad:
        raise ValueError(f"Muon trains 2-D matrices only, got shapes {bad}: move them to an AdamW group")
    # "original" scales each update by sqrt(max(1, rows/cols)), the rule matrix_lr is tuned for
    muon = torch.optim.Muon(matrices, lr=train.matrix_lr, weight_decay=train.weight_decay,
                            momentum=0.95, nesterov=True, adjust_lr_fn="original")
    adamw = torch.optim.AdamW(others, lr=train.embedding_lr, betas=ADAM_BETAS, eps=1e-10,
                              weight_decay=train.weight_decay)
    optimizers = [muon, adamw]
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return optimizers


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, warmdown_frac: float) -> float:
    """Fraction of the peak learning rate at `step` (0-based) of `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    warmdown_steps = math.ceil(warmdown_frac * total_steps)
    steps_left = total_steps - step - 1  # after this one
    if steps_left >= warmdown_steps:
        return 1.0
    progress = steps_left / warmdown_steps  # falls linearly to 0 at the last step
    return FINAL_LR_FRAC + (1.0 - FINAL_LR_FRAC) * progress


def set_learning_rates(optimizers: list[torch.optim.Optimizer], multiplier: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * multiplier
