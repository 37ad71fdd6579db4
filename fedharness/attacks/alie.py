"""A Little Is Enough, ALIE (Baruch, Baruch, Goldberg, NeurIPS 2019, §3).

The attackers submit μ − z·σ (coordinate-wise mean and standard deviation of the round's benign
updates), with z = Φ⁻¹((m − s)/m), s = ⌊m/2 + 1⌋ − k: just far enough to stay inside the spread
that median/Krum-style rules accept. Omniscient ("benign" knowledge).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import torch

from fedharness.attacks import AttackContext, register, require
from fedharness.config import finite
from fedharness.attacks._training import benign_updates


def alie_z(m: int, k: int) -> float:
    """z_max of Baruch et al. for m clients of which k are attackers."""
    s = m // 2 + 1 - k
    return NormalDist().inv_cdf(min(max((m - s) / m, 1e-6), 1 - 1e-6))


@register("alie")
@dataclass
class ALIE:
    """``z`` overrides the paper's z_max."""

    z: float | None = None
    knowledge: str = "benign"

    def __post_init__(self) -> None:
        require(self, finite(self.z), f"z null or a finite number, got {self.z}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        u = benign_updates(ctx)
        k = ctx.num_colluders
        z = self.z if self.z is not None else alie_z(u.shape[0] + k, k)
        ctx.info["alie_z"] = z
        std = u.std(dim=0, unbiased=False) if u.shape[0] > 1 else torch.zeros_like(u[0])
        malicious = ctx.global_vec + u.mean(dim=0) - z * std
        return malicious.expand(len(ctx.attacker_data), -1).clone()
