"""Model replacement (Bagdasaryan et al., "How To Backdoor Federated Learning", AISTATS 2020, §3.2).

The attacker trains a backdoored model X and submits L̃ = γ(X − G) + G with γ = n/η, so that
G⁺ = X + (η/n)·Σ_benign(Lᵢ − G) ≈ X once benign updates cancel (eq. 3). k colluders in one round
each scale by γ/k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.attacks import AttackContext, register, require
from fedharness.config import positive
from fedharness.attacks.backdoor import Backdoor


def replacement_scale(num_clients: int, eta: float, colluders: int = 1) -> float:
    """γ = n/η, split evenly over ``colluders`` attackers submitting in the same round."""
    return num_clients / eta / colluders


def replace(backdoored: torch.Tensor, global_vec: torch.Tensor, gamma: float) -> torch.Tensor:
    """L̃ = γ(X − G) + G."""
    return global_vec + gamma * (backdoored - global_vec)


@register("model_replacement")
@dataclass
class ModelReplacement(Backdoor):
    """Backdoor training, then L̃ = γ(X − G) + G; ``gamma`` defaults to n/η split over colluders."""

    gamma: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, self.gamma is None or positive(self.gamma), f"gamma null or a finite number > 0, got {self.gamma}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        backdoored = self.train(ctx)
        k = ctx.num_colluders
        gamma = self.gamma if self.gamma is not None else replacement_scale(ctx.num_clients, ctx.eta, k)
        return replace(backdoored, ctx.global_vec, gamma)
