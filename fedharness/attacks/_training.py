"""Functional local SGD on the flat parameter vector, for attacks that change the training step
(an extra loss term, a gradient mask, a projection after each step)."""

from __future__ import annotations

from typing import Callable

import torch
from torch.func import grad

from fedharness.attacks import AttackContext
from fedharness.local_training import Batch, LocalConfig, batch_schedule, module_state
from fedharness.params import split_vector


def train_vector(
    ctx: AttackContext,
    data: Batch,
    cfg: LocalConfig,
    seed: int,
    *,
    extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    grad_mask: torch.Tensor | None = None,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """SGD from the global vector: θ ← project(θ − lr·mask⊙∇[loss(θ)]), loss = extra_loss(θ, L_task)."""
    engine = ctx.engine
    _, frozen = module_state(engine.model, engine.names)

    def loss(vec: torch.Tensor, batch: Batch) -> torch.Tensor:
        params = split_vector(vec, engine.model, engine.names)
        task_loss = engine.per_sample_loss(engine.model, {**frozen, **params}, batch).mean()
        return extra_loss(vec, task_loss) if extra_loss is not None else task_loss

    step_grad = grad(loss)
    vec = ctx.global_vec.clone()
    size = len(next(iter(data.values())))
    for idx in batch_schedule(size, cfg, seed):
        g = step_grad(vec, {k: v[idx] for k, v in data.items()})
        if grad_mask is not None:
            g = g * grad_mask
        vec = vec - cfg.lr * g
        if project is not None:
            vec = project(vec)
    return vec


def benign_updates(ctx: AttackContext) -> torch.Tensor:
    """The round's benign updates Lᵢ − G (for attacks with "benign" knowledge)."""
    if ctx.benign_locals.numel() == 0:
        raise ValueError("this attack needs at least one benign client in the round")
    return ctx.benign_locals - ctx.global_vec.unsqueeze(0)
