"""Gaussian noise attack (Blanchard et al. 2017's omniscient-free baseline; FLPoison's Gaussian):
submit G + N(0, σ²·I), seeded by each attacker's round seed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.attacks import AttackContext, register, require


@register("gaussian")
@dataclass
class Gaussian:
    """Noise standard deviation ``sigma`` > 0; ``.inf`` submits non-finite updates (a client that tries to break
    the server's arithmetic, which every rule must drop)."""

    sigma: float = 1.0
    knowledge: str = "own"

    def __post_init__(self) -> None:
        require(self, self.sigma > 0, f"sigma > 0 (.inf for non-finite updates), got {self.sigma}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        rows = []
        for seed in ctx.attacker_seeds:
            g = torch.Generator().manual_seed(seed)
            rows.append(ctx.global_vec + self.sigma * torch.randn(ctx.global_vec.shape, generator=g))
        return torch.stack(rows)
