"""Gaussian noise attack (Blanchard et al. 2017's omniscient-free baseline; FLPoison's Gaussian):
submit G + N(0, σ²·I), seeded by each attacker's round seed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.attacks import AttackContext, register


@register("gaussian")
@dataclass
class Gaussian:
    """Noise standard deviation ``sigma``."""

    sigma: float = 1.0
    knowledge: str = "own"

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        rows = []
        for seed in ctx.attacker_seeds:
            g = torch.Generator().manual_seed(seed)
            rows.append(ctx.global_vec + self.sigma * torch.randn(ctx.global_vec.shape, generator=g))
        return torch.stack(rows)
