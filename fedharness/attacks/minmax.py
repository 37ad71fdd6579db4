"""Min-Max (Shejwalkar & Houmansadr, "Manipulating the Byzantine", NDSS 2021, Alg. 1 / eq. 6).

The attackers submit μ + γ·p, with p a perturbation direction (−std, −μ/‖μ‖ or −sign μ) and the
largest γ such that the malicious update's maximum distance to any benign update stays within the
maximum distance between two benign updates (found by bisection). Omniscient ("benign" knowledge).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.attacks import AttackContext, register, require
from fedharness.config import positive
from fedharness.attacks._training import benign_updates
from labcore.errors import InputError


def perturbation(u: torch.Tensor, kind: str) -> torch.Tensor:
    mean = u.mean(dim=0)
    if kind == "std":
        return -u.std(dim=0, unbiased=False)
    if kind == "unit":
        return -mean / mean.norm().clamp_min(1e-12)
    if kind == "sign":
        return -torch.sign(mean)
    raise InputError(f"minmax perturbation must be 'std', 'unit' or 'sign', got {kind!r}")


def minmax_gamma(u: torch.Tensor, p: torch.Tensor, gamma_max: float, steps: int) -> float:
    """Largest γ ≤ ``gamma_max`` with max_i ‖μ + γp − uᵢ‖ ≤ max_{i,j} ‖uᵢ − uⱼ‖ (bisection)."""
    bound = torch.cdist(u, u).max()
    mean = u.mean(dim=0)
    lo, hi = 0.0, gamma_max
    for _ in range(steps):
        mid = (lo + hi) / 2
        if (mean + mid * p - u).norm(dim=1).max() <= bound:
            lo = mid
        else:
            hi = mid
    return lo


@register("minmax")
@dataclass
class MinMax:
    """Perturbation ``kind``; γ searched in [0, ``gamma_max``]."""

    kind: str = "std"
    gamma_max: float = 50.0
    steps: int = 30
    knowledge: str = "benign"

    def __post_init__(self) -> None:
        require(self, self.kind in ("std", "unit", "sign") and positive(self.gamma_max) and self.steps >= 1,
                f"kind 'std', 'unit' or 'sign', a finite gamma_max > 0 and steps >= 1, got kind={self.kind!r}, "
                f"gamma_max={self.gamma_max}, steps={self.steps}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        u = benign_updates(ctx)
        p = perturbation(u, self.kind)
        gamma = minmax_gamma(u, p, self.gamma_max, self.steps)
        ctx.info["minmax_gamma"] = gamma
        malicious = ctx.global_vec + u.mean(dim=0) + gamma * p
        return malicious.expand(len(ctx.attacker_data), -1).clone()
