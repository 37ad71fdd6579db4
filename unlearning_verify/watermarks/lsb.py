"""Key-derived LSB steganographic marker (Guo et al., TIFS 2024, §II-B; after Li et al., TDSC 2021).

The PRF of the owner's key gives a 500-character marker (4000 bits). Its bits are written cyclically
over the ``planes`` lowest bit planes of every pixel in raster order (as in the official PoUL code),
so each pixel carries a key-derived nibble s. We combine it by XOR, x* = x ⊕ s on the low planes:
it changes no pixel by more than (2^planes − 1)/255 = 15/255 and is exactly invertible with the key.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from unlearning_verify.keys import OwnerKey
from unlearning_verify.watermarks import dirty_label_poison


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


@dataclass
class LSBWatermark:
    """x* = x ⊕ s in the low ``planes`` bits; s (C, H, W) uint8 from the key."""

    target: int
    mask: torch.Tensor
    planes: int = 4
    family: str = "lsb"
    clean_label: bool = False

    @classmethod
    def from_key(cls, key: OwnerKey, image_shape: tuple[int, int, int], planes: int = 4, marker_chars: int = 500) -> "LSBWatermark":
        bits = np.unpackbits(np.frombuffer(key.prf("lsb-marker", marker_chars), dtype=np.uint8))
        num_pixels = int(np.prod(image_shape))
        stream = bits[np.arange(num_pixels * planes) % len(bits)].reshape(num_pixels, planes)
        nibble = (stream * (1 << np.arange(planes))).sum(1).astype(np.uint8)
        return cls(key.target_label(), torch.from_numpy(nibble.reshape(image_shape)), planes)

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        return (to_uint8(x) ^ self.mask).float() / 255

    def unmark(self, x_marked: torch.Tensor) -> torch.Tensor:
        """The original images back (XOR is its own inverse)."""
        return self.trigger(x_marked)

    def poison(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return dirty_label_poison(self, x, y)
