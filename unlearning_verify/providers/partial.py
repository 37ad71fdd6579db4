"""D3 (dishonest): delete only part of the owner's rows (a fraction ``keep`` stays), then retrain."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from unlearning_verify.providers import TRAIN_FIELDS, ProviderState, register, require
from unlearning_verify.training import fit


@register("partial")
@dataclass
class PartialDeletion:
    keep: float = 0.5
    name: str = "partial"
    honest: bool = False
    reads_train = TRAIN_FIELDS

    def __post_init__(self) -> None:
        require(self.name, "keep", self.keep, 0.0 <= self.keep <= 1.0, "a fraction in [0, 1]")

    def unlearn(self, state: ProviderState) -> nn.Module:
        owned = np.flatnonzero(state.forget)
        rng = np.random.default_rng(state.seed + 2)
        kept = rng.choice(owned, size=int(round(self.keep * len(owned))), replace=False)
        train = ~state.forget
        train[kept] = True
        idx = torch.as_tensor(train)
        return fit(state.x[idx], state.y[idx], state.num_classes, state.train_config, state.seed + 1)[0]
