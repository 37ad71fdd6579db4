"""Pixel-pattern backdoor data poisoning (BadNets, Gu et al. 2017; Bagdasaryan et al. 2020, §4).

A fixed pattern stamped into a corner of an image turns its label into the target class. The
poisoning client trains on its own data plus triggered copies relabelled to the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PixelPattern:
    """A checkerboard ``size``×``size`` patch ``margin`` pixels from the bottom-right corner.

    The default sits in the corner of MNIST's empty 4-pixel border, where no clean digit has ink.
    """

    size: int = 4
    margin: int = 0
    value: float = 1.0

    def mask_and_pattern(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.size + self.margin > min(height, width):
            raise ValueError(f"trigger of size {self.size}+{self.margin} does not fit a {height}×{width} image")
        mask = torch.zeros(height, width)
        pattern = torch.zeros(height, width)
        top, left = height - self.margin - self.size, width - self.margin - self.size
        mask[top : top + self.size, left : left + self.size] = 1.0
        yy, xx = torch.meshgrid(torch.arange(self.size), torch.arange(self.size), indexing="ij")
        pattern[top : top + self.size, left : left + self.size] = ((yy + xx) % 2 == 0).float() * self.value
        return mask, pattern

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Stamp the pattern into images of shape (..., H, W) with values in [0, 1]."""
        mask, pattern = self.mask_and_pattern(images.shape[-2], images.shape[-1])
        mask, pattern = mask.to(images), pattern.to(images)
        return images * (1 - mask) + pattern * mask


def poison(
    x: torch.Tensor, y: torch.Tensor, trigger: PixelPattern, target: int, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Own data plus triggered, relabelled copies of a ``fraction`` of it (at least one sample)."""
    g = torch.Generator().manual_seed(seed)
    k = max(1, round(fraction * len(x)))
    pick = torch.randperm(len(x), generator=g)[:k]
    x_bd = trigger.apply(x[pick])
    y_bd = torch.full((k,), target, dtype=y.dtype)
    return torch.cat([x, x_bd]), torch.cat([y, y_bd])
