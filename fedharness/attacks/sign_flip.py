"""Sign flipping (e.g. Allen-Zhu et al. 2021; Blades/ByzFL's SignFlipping): train honestly, then
submit the reversed update G − s·(L − G)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.attacks import AttackContext, register, require
from fedharness.config import positive


@register("sign_flip")
@dataclass
class SignFlip:
    """Reverse (and scale by ``scale``) the attacker's honest update."""

    scale: float = 1.0
    knowledge: str = "own"

    def __post_init__(self) -> None:
        require(self, positive(self.scale), f"a finite scale > 0, got {self.scale}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        honest = ctx.engine.train(ctx.global_vec, ctx.attacker_data, ctx.local, ctx.attacker_seeds)
        return ctx.global_vec - self.scale * (honest - ctx.global_vec)
