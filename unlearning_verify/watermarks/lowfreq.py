"""Low-frequency additive trigger (after Zeng et al., ICCV 2021): a key-derived smooth pattern.

The pattern is a sum of cosines with spatial frequencies up to ``max_freq`` cycles per image, random
key-derived amplitudes and phases, scaled to a peak of ``amplitude``; x* = clamp(x + pattern, 0, 1).
Purifications that act on fine detail (bit-depth quantisation, JPEG, blur, median denoising) leave
it nearly intact: their error is small next to a pattern that varies over several pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from unlearning_verify.keys import OwnerKey
from unlearning_verify.watermarks import dirty_label_poison


@dataclass
class LowFrequencyWatermark:
    target: int
    pattern: torch.Tensor  # (C, H, W), peak |value| = amplitude
    family: str = "lowfreq"
    clean_label: bool = False

    @classmethod
    def from_key(cls, key: OwnerKey, image_shape: tuple[int, int, int], amplitude: float = 0.15,
                 max_freq: int = 3) -> "LowFrequencyWatermark":
        c, h, w = image_shape
        rng = key.rng("lowfreq-pattern")
        ii, jj = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")
        pattern = np.zeros(image_shape)
        for u in range(max_freq + 1):
            for v in range(max_freq + 1):
                if u == v == 0:
                    continue
                amp, phase = rng.normal(size=c), rng.uniform(0, 2 * np.pi, size=c)
                pattern += amp[:, None, None] * np.cos(2 * np.pi * (u * ii + v * jj)[None] + phase[:, None, None])
        pattern *= amplitude / np.abs(pattern).max()
        return cls(key.target_label(), torch.from_numpy(pattern.astype("float32")))

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.pattern).clamp(0, 1)

    def poison(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return dirty_label_poison(self, x, y)
