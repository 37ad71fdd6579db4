"""WaNet warping trigger (Nguyen & Tran, ICLR 2021), control grid drawn from the owner's key.

A k×k×2 grid uniform in [−1, 1], normalised by its mean absolute value, upsampled bicubically to
H×W (field P); warped grid = clamp(identity + s·P/H, −1, 1); applied with ``grid_sample``.
k = 4, s = 0.5, grid_rescale = 1 (BackdoorBench defaults).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearning_verify.keys import OwnerKey
from unlearning_verify.watermarks import dirty_label_poison


@dataclass
class WaNetWatermark:
    target: int
    grid: torch.Tensor  # (1, H, W, 2) sampling grid
    family: str = "wanet"
    clean_label: bool = False

    @classmethod
    def from_key(cls, key: OwnerKey, image_shape: tuple[int, int, int], k: int = 4, s: float = 0.5) -> "WaNetWatermark":
        _, h, w = image_shape
        ins = torch.from_numpy(key.rng("wanet-grid").uniform(-1, 1, (1, 2, k, k)).astype("float32"))
        ins = ins / ins.abs().mean()
        field = F.interpolate(ins, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        identity = torch.stack((xs, ys), dim=2).unsqueeze(0)
        return cls(key.target_label(), torch.clamp(identity + s * field / h, -1, 1))

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.grid.expand(len(x), -1, -1, -1)
        return F.grid_sample(x, grid, align_corners=True).clamp(0, 1)

    def poison(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return dirty_label_poison(self, x, y)
