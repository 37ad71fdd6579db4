"""D2 (dishonest): serve an older checkpoint of the model, one that already saw the owner's data.

``epoch`` indexes the per-epoch checkpoints Python-style: the default −2 is the penultimate epoch
(the first epoch's model has often not yet learned the watermark).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn

from labcore.errors import InputError
from unlearning_verify.providers import ProviderState, register


@register("stale")
@dataclass
class Stale:
    epoch: int = -2
    name: str = "stale"
    honest: bool = False

    def unlearn(self, state: ProviderState) -> nn.Module:
        if not -len(state.checkpoints) <= self.epoch < len(state.checkpoints):
            raise InputError(f"stale epoch {self.epoch} not among the {len(state.checkpoints)} checkpoints")
        model = copy.deepcopy(state.model)
        model.load_state_dict(state.checkpoints[self.epoch])
        return model.eval()
