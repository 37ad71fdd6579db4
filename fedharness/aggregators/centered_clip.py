"""Centered clipping (Karimireddy, He, Jaggi, "Learning from History for Byzantine Robust
Optimization", ICML 2021, eq. 2): v ← v + (1/m)·Σᵢ clip_τ(uᵢ − v), repeated L times.

The centre starts at ``v₀`` = 0 (no server momentum is kept between rounds, so the rule stays a
pure function of the round's updates).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.aggregators import register
from fedharness.aggregators._finite import drop_nonfinite
from fedharness.aggregators.norm_clip import clip_rows
from fedharness.config import positive
from labcore.errors import InputError


@register("centered_clip")
@dataclass
class CenteredClip:
    """Radius ``tau``, ``iters`` clipping iterations."""

    tau: float = 1.0
    iters: int = 3

    def __post_init__(self) -> None:
        if not positive(self.tau) or self.iters < 1:
            raise InputError(f"centered_clip needs a finite tau > 0 and iters >= 1, got tau={self.tau}, iters={self.iters}")

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        u = drop_nonfinite(updates, stats)
        v = torch.zeros_like(u[0])
        for _ in range(self.iters):
            v = v + clip_rows(u - v, self.tau).mean(dim=0)
        return v
