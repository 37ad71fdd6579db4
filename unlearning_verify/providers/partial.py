"""D3 (dishonest): delete only part of the owner's rows (a fraction ``keep`` stays), then retrain."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from labcore.errors import InputError
from unlearning_verify.providers import ProviderState, register
from unlearning_verify.training import fit


@register("partial")
@dataclass
class PartialDeletion:
    keep: float = 0.5
    name: str = "partial"
    honest: bool = False

    def unlearn(self, state: ProviderState) -> nn.Module:
        if not 0.0 <= self.keep <= 1.0:
            raise InputError(f"partial deletion keep fraction must lie in [0, 1], got {self.keep}")
        owned = np.flatnonzero(state.forget)
        rng = np.random.default_rng(state.seed + 2)
        kept = rng.choice(owned, size=int(round(self.keep * len(owned))), replace=False)
        train = ~state.forget
        train[kept] = True
        idx = torch.as_tensor(train)
        return fit(state.x[idx], state.y[idx], state.num_classes, state.train_config, state.seed + 1)[0]
