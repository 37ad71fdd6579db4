"""Blended trigger (Chen et al. 2017): x* = (1 − α)·x + α·k with a key-seeded uniform-noise image k.

α = 0.2 at marking and query time (BackdoorBench default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearning_verify.keys import OwnerKey
from unlearning_verify.watermarks import dirty_label_poison


@dataclass
class BlendedWatermark:
    target: int
    pattern: torch.Tensor
    alpha: float = 0.2
    family: str = "blended"
    clean_label: bool = False

    @classmethod
    def from_key(cls, key: OwnerKey, image_shape: tuple[int, int, int], alpha: float = 0.2) -> "BlendedWatermark":
        noise = key.rng("blended-pattern").random(image_shape, dtype="float32")
        return cls(key.target_label(), torch.from_numpy(noise), alpha)

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        return (1 - self.alpha) * x + self.alpha * self.pattern

    def poison(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return dirty_label_poison(self, x, y)
