"""Constrain-and-scale (Bagdasaryan et al., "How To Backdoor Federated Learning", AISTATS 2020, §4.3).

The attacker trains on L = α·L_class + (1 − α)·L_ano, where L_class is the loss on its mixed clean
and backdoor batches and L_ano = ‖X − G‖ the anomaly metric of a norm-based detector, then scales
the result like model replacement: L̃ = γ(X − G) + G, γ = n/η split over colluders.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.attacks import AttackContext, register, require
from fedharness.config import positive
from fedharness.attacks._training import train_vector
from fedharness.attacks.backdoor import Backdoor
from fedharness.attacks.model_replacement import replace, replacement_scale
from fedharness.local_training import LocalConfig


@register("constrain_scale")
@dataclass
class ConstrainAndScale(Backdoor):
    """``alpha`` weighs the class loss against the L2 anomaly loss; ``gamma`` defaults to n/η/k."""

    alpha: float = 0.7
    gamma: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, 0 <= self.alpha <= 1 and (self.gamma is None or positive(self.gamma)),
                f"alpha in [0, 1] and gamma null or a finite number > 0, got alpha={self.alpha}, gamma={self.gamma}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        cfg = LocalConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)
        g = ctx.global_vec

        def objective(vec: torch.Tensor, class_loss: torch.Tensor) -> torch.Tensor:
            anomaly = torch.sqrt(((vec - g) ** 2).sum() + 1e-12)
            return self.alpha * class_loss + (1 - self.alpha) * anomaly

        rows = [train_vector(ctx, ctx.task.poisoned_data(d, s), cfg, s, extra_loss=objective)
                for d, s in zip(ctx.attacker_data, ctx.attacker_seeds)]
        gamma = self.gamma if self.gamma is not None else replacement_scale(ctx.num_clients, ctx.eta, ctx.num_colluders)
        return replace(torch.stack(rows), g, gamma)
