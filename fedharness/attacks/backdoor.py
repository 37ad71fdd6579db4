"""Naive backdoor data poisoning: the attacker trains on the task's poisoned data and submits the
result unscaled (the baseline that model replacement boosts; Bagdasaryan et al. 2020, §4.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.attacks import AttackContext, register, require
from fedharness.config import MAX_LOCAL_EPOCHS, positive
from fedharness.local_training import LocalConfig


@register("backdoor")
@dataclass
class Backdoor:
    """Train X on own data plus triggered, relabelled copies with the attacker's own local schedule."""

    epochs: int = 2
    lr: float = 0.05
    batch_size: int = 10
    knowledge: str = "own"

    def __post_init__(self) -> None:
        require(self, 1 <= self.epochs <= MAX_LOCAL_EPOCHS and self.batch_size >= 1 and positive(self.lr),
                f"epochs in 1..{MAX_LOCAL_EPOCHS}, batch_size >= 1 and a finite lr > 0, got epochs={self.epochs}, "
                f"batch_size={self.batch_size}, lr={self.lr}")

    def train(self, ctx: AttackContext) -> torch.Tensor:
        data = [ctx.task.poisoned_data(d, s) for d, s in zip(ctx.attacker_data, ctx.attacker_seeds)]
        cfg = LocalConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)
        return ctx.engine.train(ctx.global_vec, data, cfg, ctx.attacker_seeds)

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        return self.train(ctx)
