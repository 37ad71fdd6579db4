"""H3 (honest, approximate): fine-tune the served model on the retained data only.

A cheap honest provider; a backdoor often persists after few epochs (reference §3).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from torch import nn

from unlearning_verify.providers import ProviderState, register, require
from unlearning_verify.training import TrainConfig, train


@register("finetune")
@dataclass
class FineTune:
    epochs: int = 1
    lr: float = 1e-3
    name: str = "finetune"
    honest: bool = True
    reads_train = ("batch_size",)

    def __post_init__(self) -> None:
        require(self.name, "epochs", self.epochs, self.epochs >= 1, "an integer ≥ 1")
        require(self.name, "lr", self.lr, math.isfinite(self.lr) and self.lr > 0, "a finite number > 0")

    def unlearn(self, state: ProviderState) -> nn.Module:
        model = copy.deepcopy(state.model)
        x, y = state.retained()
        cfg = TrainConfig(self.epochs, self.lr, state.train_config.batch_size, schedule="constant")
        train(model, x, y, cfg, state.seed + 3)
        return model
