"""H4 (honest, approximate): gradient ascent (NegGrad) on the deleted rows, then repair on the rest.

Bounded ascent on D_u, followed by ``repair_epochs`` of fine-tuning on D_r so that clean accuracy
recovers (it may overshoot: backdoor success below q, clean accuracy down).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from unlearning_verify.providers import ProviderState, register, require
from unlearning_verify.training import TrainConfig, train


@register("gradient_ascent")
@dataclass
class GradientAscent:
    ascent_epochs: int = 1
    ascent_lr: float = 1e-3
    repair_epochs: int = 1
    repair_lr: float = 5e-4
    name: str = "gradient_ascent"
    honest: bool = True
    reads_train = ("batch_size",)

    def __post_init__(self) -> None:
        require(self.name, "ascent_epochs", self.ascent_epochs, self.ascent_epochs >= 1, "an integer ≥ 1")
        require(self.name, "repair_epochs", self.repair_epochs, self.repair_epochs >= 0, "an integer ≥ 0 (0: no repair)")
        for param, lr in (("ascent_lr", self.ascent_lr), ("repair_lr", self.repair_lr)):
            require(self.name, param, lr, math.isfinite(lr) and lr > 0, "a finite number > 0")

    def unlearn(self, state: ProviderState) -> nn.Module:
        model = copy.deepcopy(state.model)
        batch = state.train_config.batch_size
        forget = torch.as_tensor(state.forget)
        train(model, state.x[forget], state.y[forget], TrainConfig(self.ascent_epochs, self.ascent_lr, batch, "constant"),
              state.seed + 4, ascent=True)
        x, y = state.retained()
        if self.repair_epochs:
            train(model, x, y, TrainConfig(self.repair_epochs, self.repair_lr, batch, "constant"), state.seed + 5)
        return model
