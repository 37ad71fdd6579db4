"""Semantic backdoor (Bagdasaryan et al., "How To Backdoor Federated Learning", AISTATS 2020, §4.1):
the trigger is a naturally occurring feature — here thick-stroke digits of one class
(``task.semantic``) — relabelled to the target; test inputs are not edited.

The attacker adds the feature's training images it has collected (``task.semantic_indices("train")``)
relabelled to the target to its own data, trains, and boosts like model replacement
(γ = n/η split over colluders; ``gamma: 1`` for plain data poisoning).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.attacks import AttackContext, register, require
from fedharness.config import positive
from fedharness.attacks.backdoor import Backdoor
from fedharness.attacks.model_replacement import replace, replacement_scale
from labcore.errors import InputError
from fedharness.local_training import LocalConfig


@register("semantic_backdoor")
@dataclass
class SemanticBackdoor(Backdoor):
    """Own data + the feature's images relabelled to the target; ``gamma`` defaults to n/η/k."""

    gamma: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, self.gamma is None or positive(self.gamma), f"gamma null or a finite number > 0, got {self.gamma}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        task = ctx.task
        if getattr(task, "semantic", None) is None:
            raise InputError("semantic_backdoor needs task.backdoor: semantic in the experiment config")
        idx = task.semantic_indices("train")
        x_feature = task.x_train[idx]
        y_feature = torch.full((len(idx),), task.target_label, dtype=task.y_train.dtype)
        data = [{"x": torch.cat([d["x"], x_feature]), "y": torch.cat([d["y"], y_feature])} for d in ctx.attacker_data]
        cfg = LocalConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)
        trained = ctx.engine.train(ctx.global_vec, data, cfg, ctx.attacker_seeds)
        gamma = self.gamma if self.gamma is not None else replacement_scale(ctx.num_clients, ctx.eta, ctx.num_colluders)
        return replace(trained, ctx.global_vec, gamma)
