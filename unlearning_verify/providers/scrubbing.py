"""D4 (dishonest): scrub the watermark, keep the data (reference §3, D4; Zhang et al., ICML 2024).

The provider runs Activation Clustering (Chen et al. 2018; ``fedharness.detection``) on the served
model's penultimate activations over its training set, drops the suspect samples and retrains from
scratch. The owner's genuine samples stay in training, so the deletion is violated even when the
backdoor test passes; the membership check is what can catch it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from unlearning_verify.providers import TRAIN_FIELDS, ProviderState, register, require
from unlearning_verify.training import fit


@register("scrubbing")
@dataclass
class Scrubbing:
    layer: str = "features"
    n_components: int = 10
    name: str = "scrubbing"
    honest: bool = False
    flagged: np.ndarray | None = field(default=None, init=False, repr=False)
    reads_train = TRAIN_FIELDS

    def __post_init__(self) -> None:
        require(self.name, "n_components", self.n_components, self.n_components >= 1, "an integer ≥ 1")

    def unlearn(self, state: ProviderState) -> nn.Module:
        from fedharness.detection.activation_clustering import detect

        result = detect(state.model, self.layer, state.x, state.y, n_components=self.n_components, seed=state.seed)
        self.flagged = np.asarray(result.suspect_indices, dtype=np.int64)
        keep = np.ones(len(state.x), dtype=bool)
        keep[self.flagged] = False
        idx = torch.as_tensor(keep)
        return fit(state.x[idx], state.y[idx], state.num_classes, state.train_config, state.seed + 1)[0]
