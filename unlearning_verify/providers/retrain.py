"""H1 (honest, exact): retrain from scratch without the deleted rows. The reference for q."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unlearning_verify.providers import TRAIN_FIELDS, ProviderState, register
from unlearning_verify.training import fit


@register("retrain")
@dataclass
class Retrain:
    name: str = "retrain"
    honest: bool = True
    reads_train = TRAIN_FIELDS

    def unlearn(self, state: ProviderState) -> nn.Module:
        x, y = state.retained()
        return fit(x, y, state.num_classes, state.train_config, state.seed + 1)[0]
