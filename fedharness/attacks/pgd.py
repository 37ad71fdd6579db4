"""Norm-bounded (PGD) backdoor (Sun et al., "Can You Really Backdoor FL?", 2019; Wang et al.,
"Attack of the Tails", NeurIPS 2020, §4): backdoor training with the model projected back onto the
L2 ball ‖X − G‖ ≤ ε/γ after every step, then scaled by γ, so the submitted update has norm ≤ ε and
passes a norm-clipping defense of bound ε unchanged.
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


def project_ball(vec: torch.Tensor, centre: torch.Tensor, radius: float) -> torch.Tensor:
    """Closest point to ``vec`` within L2 distance ``radius`` of ``centre``."""
    delta = vec - centre
    norm = delta.norm()
    return centre + delta * (radius / norm) if norm > radius else vec


@register("pgd_backdoor")
@dataclass
class PGDBackdoor(Backdoor):
    """Submitted update norm ≤ ``eps``; ``gamma`` ≥ 1 boosts inside that budget."""

    eps: float = 1.0
    gamma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (positive(self.eps) and positive(self.gamma)):
            raise InputError(f"pgd_backdoor needs finite eps > 0 and gamma > 0, got eps={self.eps}, gamma={self.gamma}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        cfg = LocalConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)
        g = ctx.global_vec
        radius = self.eps / self.gamma
        rows = [train_vector(ctx, ctx.task.poisoned_data(d, s), cfg, s, project=lambda v: project_ball(v, g, radius))
                for d, s in zip(ctx.attacker_data, ctx.attacker_seeds)]
        return replace(torch.stack(rows), g, self.gamma)
