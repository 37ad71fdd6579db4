"""H2 (honest, exact): SISA training (Bourtoule et al., S&P 2021) — shards, slices, retrain one shard.

The data is split into S shards, each shard into R slices trained incrementally (stage r trains on
slices 1..r) with a checkpoint after each stage. A deletion restarts each affected shard from the
checkpoint before its first affected slice and continues without the deleted rows; the served model
averages the shard models' softmax outputs. Checkpoints before the first affected slice are replayed
with the same seeds, which reproduces the stored ones exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedharness.partition import iid
from unlearning_verify.providers import TRAIN_FIELDS, ProviderState, register, require
from unlearning_verify.training import build_model, train


class Ensemble(nn.Module):
    """Mean of the shard models' softmax outputs (returned as log-probabilities)."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).softmax(1) for m in self.members]).mean(0).log()


@register("sisa")
@dataclass
class SISA:
    shards: int = 5
    slices: int = 2
    name: str = "sisa"
    honest: bool = True
    reads_train = TRAIN_FIELDS

    def __post_init__(self) -> None:
        require(self.name, "shards", self.shards, self.shards >= 1, "an integer ≥ 1")
        require(self.name, "slices", self.slices, self.slices >= 1, "an integer ≥ 1")

    def shard_model(self, state: ProviderState, slices: list[np.ndarray], shard: int) -> nn.Module:
        """Train one shard incrementally over its slices, with the deleted rows removed."""
        model = build_model(state.x, state.num_classes, state.seed + 100 + shard)
        seen: list[np.ndarray] = []
        for r, part in enumerate(slices):
            seen.append(part[~state.forget[part]])
            idx = torch.as_tensor(np.concatenate(seen))
            train(model, state.x[idx], state.y[idx], state.train_config, state.seed + 1000 * shard + r)
        return model

    def unlearn(self, state: ProviderState) -> nn.Module:
        shards = iid(len(state.x), self.shards, state.seed + 6)
        models = [self.shard_model(state, np.array_split(idx, self.slices), s) for s, idx in enumerate(shards)]
        return Ensemble(models).eval()
