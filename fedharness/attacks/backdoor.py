"""Naive backdoor data poisoning: the attacker trains on the task's poisoned data and submits the
result unscaled (the baseline that model replacement boosts; Bagdasaryan et al. 2020, §4.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.attacks import AttackContext, register
from fedharness.local_training import LocalConfig


@register("backdoor")
@dataclass
class Backdoor:
    """Train X on own data plus triggered, relabelled copies with the attacker's own local schedule."""

    epochs: int = 2
    lr: float = 0.05
    batch_size: int = 10
    knowledge: str = "own"

    def train(self, ctx: AttackContext) -> torch.Tensor:
        data = [ctx.task.poisoned_data(d, s) for d, s in zip(ctx.attacker_data, ctx.attacker_seeds)]
        cfg = LocalConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)
        return ctx.engine.train(ctx.global_vec, data, cfg, ctx.attacker_seeds)

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        return self.train(ctx)
