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
    reads_train = ()

    def check_checkpoints(self, count: int) -> None:
        """Refuse an ``epoch`` that indexes none of ``count`` per-epoch checkpoints."""
        if not -count <= self.epoch < count:
            raise InputError(f"behaviour stale: parameter epoch {self.epoch} indexes none of the model's {count} "
                             f"per-epoch checkpoints; pass --param epoch=E with {-count} ≤ E ≤ {count - 1}, or train more epochs (--epochs)")

    def unlearn(self, state: ProviderState) -> nn.Module:
        self.check_checkpoints(len(state.checkpoints))
        model = copy.deepcopy(state.model)
        model.load_state_dict(state.checkpoints[self.epoch])
        return model.eval()
