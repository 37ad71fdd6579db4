"""H3 (honest, approximate): fine-tune the served model on the retained data only.

A cheap honest provider; a backdoor often persists after few epochs (reference §3).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn

from unlearning_verify.providers import ProviderState, register
from unlearning_verify.training import TrainConfig, train


@register("finetune")
@dataclass
class FineTune:
    epochs: int = 1
    lr: float = 1e-3
    name: str = "finetune"
    honest: bool = True

    def unlearn(self, state: ProviderState) -> nn.Module:
        model = copy.deepcopy(state.model)
        x, y = state.retained()
        cfg = TrainConfig(self.epochs, self.lr, state.train_config.batch_size, schedule="constant")
        train(model, x, y, cfg, state.seed + 3)
        return model
