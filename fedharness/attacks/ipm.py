"""Inner-product manipulation, IPM (Xie, Koyejo, Gupta, "Fall of Empires", UAI 2020, §4).

The attackers submit −ε·μ (μ: mean benign update), making the inner product of the aggregate with
the true gradient negative when the robust rule lets them in. Omniscient ("benign" knowledge).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.attacks import AttackContext, register, require
from fedharness.config import positive
from fedharness.attacks._training import benign_updates


@register("ipm")
@dataclass
class IPM:
    """Scale ``eps`` of the reversed mean."""

    eps: float = 0.5
    knowledge: str = "benign"

    def __post_init__(self) -> None:
        require(self, positive(self.eps), f"a finite eps > 0, got {self.eps}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        malicious = ctx.global_vec - self.eps * benign_updates(ctx).mean(dim=0)
        return malicious.expand(len(ctx.attacker_data), -1).clone()
