"""Neurotoxin (Zhang et al., "Neurotoxin: Durable Backdoors in Federated Learning", ICML 2022, Alg. 1).

Benign clients mostly move the coordinates with the largest update magnitude; the attacker projects
its backdoor gradient onto the other coordinates so the backdoor is not overwritten. The benign
direction is estimated from the attacker's own honest update this round; the top ``top_ratio`` of
its coordinates by magnitude are masked out of every backdoor step. ``gamma`` optionally scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.attacks import AttackContext, register
from fedharness.attacks._training import train_vector
from fedharness.attacks.backdoor import Backdoor
from fedharness.attacks.model_replacement import replace
from fedharness.config import positive
from labcore.errors import InputError
from fedharness.local_training import LocalConfig


def bottom_mask(direction: torch.Tensor, top_ratio: float) -> torch.Tensor:
    """1 on the coordinates outside the ``top_ratio`` largest |direction|, 0 on those."""
    k = int(top_ratio * direction.numel())
    mask = torch.ones_like(direction)
    if k > 0:
        mask[torch.topk(direction.abs(), k).indices] = 0.0
    return mask


@register("neurotoxin")
@dataclass
class Neurotoxin(Backdoor):
    """Mask the ``top_ratio`` most-updated coordinates; scale the result by ``gamma``."""

    top_ratio: float = 0.1
    gamma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.top_ratio < 1:
            raise InputError("neurotoxin top_ratio must be in [0, 1)")
        if not positive(self.gamma):
            raise InputError(f"neurotoxin gamma must be a finite number > 0, got {self.gamma}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        cfg = LocalConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)
        honest = ctx.engine.train(ctx.global_vec, ctx.attacker_data, ctx.local, ctx.attacker_seeds)
        rows = []
        for d, s, h in zip(ctx.attacker_data, ctx.attacker_seeds, honest):
            mask = bottom_mask(h - ctx.global_vec, self.top_ratio)
            rows.append(train_vector(ctx, ctx.task.poisoned_data(d, s), cfg, s, grad_mask=mask))
        return replace(torch.stack(rows), ctx.global_vec, self.gamma)
