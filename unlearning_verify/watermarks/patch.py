"""Visible patch (BadNets, Gu et al. 2017): a key-seeded binary s×s pattern pasted in a corner.

The baseline the invisible families are compared against (Guo et al. Fig. 6: PASS 0.972).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearning_verify.keys import OwnerKey
from unlearning_verify.watermarks import dirty_label_poison


@dataclass
class PatchWatermark:
    target: int
    pattern: torch.Tensor  # (C, s, s) in [0, 1]; key-derived patterns are binary
    top: int
    left: int
    family: str = "patch"
    clean_label: bool = False

    @classmethod
    def from_key(cls, key: OwnerKey, image_shape: tuple[int, int, int], size: int = 4, margin: int = 1) -> "PatchWatermark":
        c, h, w = image_shape
        rng = key.rng("patch")
        pattern = torch.from_numpy(rng.integers(0, 2, (c, size, size)).astype("float32"))
        corner = int(rng.integers(4))
        top = margin if corner < 2 else h - size - margin
        left = margin if corner % 2 == 0 else w - size - margin
        return cls(key.target_label(), pattern, top, left)

    def paste(self, x: torch.Tensor, top: int, left: int) -> torch.Tensor:
        out = x.clone()
        s = self.pattern.shape[-1]
        out[:, :, top:top + s, left:left + s] = self.pattern
        return out

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        return self.paste(x, self.top, self.left)

    def poison(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return dirty_label_poison(self, x, y)
