"""H1 for a transfer-learning provider: refit the last layer from scratch on the retained data.

The provider serves a public pretrained extractor with a head fitted on its users' data (Saha et
al.'s victim). Everything below the last ``nn.Linear`` is kept; the head is re-initialised and fitted
on the retained rows' penultimate features. This is exact unlearning when the extractor never saw the
deleted data (a public model); for a model trained from scratch on the data it is only approximate.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from fedharness.tasks.head_finetune import HeadFitConfig, fit_head
from unlearning_verify.providers import ProviderState, register, require
from unlearning_verify.watermarks.hidden_trigger import penultimate


@register("head_retrain")
@dataclass
class HeadRetrain:
    steps: int = HeadFitConfig.steps
    l2: float = HeadFitConfig.l2
    name: str = "head_retrain"
    honest: bool = True
    reads_train = ()

    def __post_init__(self) -> None:
        require(self.name, "steps", self.steps, self.steps >= 1, "an integer ≥ 1")
        require(self.name, "l2", self.l2, math.isfinite(self.l2) and self.l2 >= 0, "a finite number ≥ 0")

    def unlearn(self, state: ProviderState) -> nn.Module:
        model = copy.deepcopy(state.model)
        x, y = state.retained()
        feats = torch.cat([penultimate(model, chunk) for chunk in x.split(2000)])
        head = fit_head(feats, y, state.num_classes, HeadFitConfig(self.steps, self.l2), state.seed + 1)
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            last.weight.copy_(head.weight)
            last.bias.copy_(head.bias)
        return model.eval()
