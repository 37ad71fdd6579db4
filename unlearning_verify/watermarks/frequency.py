"""FTrojan-style frequency trigger (Wang et al., ECCV 2022): add magnitude m to fixed DCT coefficients.

Block DCT (window w) of each channel, +m at mid/high-frequency positions, inverse DCT. BackdoorBench
uses w = 32 and positions (15, 15), (31, 31) with m = 30 on 0–255; here the two positions are drawn
from the owner's key in the upper half of each window's frequency band, m = 30/255.
(Grayscale images: no YCrCb conversion.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.fft import dctn, idctn

from unlearning_verify.keys import OwnerKey
from unlearning_verify.watermarks import dirty_label_poison


@dataclass
class FrequencyWatermark:
    target: int
    positions: tuple[tuple[int, int], ...]
    window: int
    magnitude: float = 30 / 255
    family: str = "frequency"
    clean_label: bool = False

    @classmethod
    def from_key(cls, key: OwnerKey, image_shape: tuple[int, int, int], window: int | None = None,
                 magnitude: float = 30 / 255, num_positions: int = 2) -> "FrequencyWatermark":
        w = window or min(image_shape[1:])
        rng = key.rng("frequency-positions")
        positions = tuple((int(a), int(b)) for a, b in rng.integers(w // 2, w, size=(num_positions, 2)))
        return cls(key.target_label(), positions, w, magnitude)

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().numpy().astype(np.float64)
        n, c, h, w = arr.shape
        win = self.window
        for top in range(0, h - win + 1, win):
            for left in range(0, w - win + 1, win):
                block = dctn(arr[:, :, top:top + win, left:left + win], axes=(2, 3), norm="ortho")
                for i, j in self.positions:
                    block[:, :, i, j] += self.magnitude * win  # ortho DCT: a pixel-scale amplitude ≈ m
                arr[:, :, top:top + win, left:left + win] = idctn(block, axes=(2, 3), norm="ortho")
        return torch.from_numpy(arr).float().clamp(0, 1)

    def poison(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return dirty_label_poison(self, x, y)
