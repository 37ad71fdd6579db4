"""D6 (dishonest): keep the data, but transform every query before the model sees it.

Bit-depth quantisation to ``bits`` bits (4 erases the LSB watermark's planes) or JPEG re-encoding
(Pillow, ``quality``). The served model is the original one behind the transform.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from labcore.errors import InputError
from unlearning_verify.providers import ProviderState, register


def quantise(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Keep the ``bits`` most significant bits of each 8-bit pixel."""
    step = 2 ** (8 - bits)
    return (torch.div((x * 255).round(), step, rounding_mode="floor") * step) / 255


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG-encode and decode every image (grayscale or RGB)."""
    out = []
    for img in (x * 255).round().clamp(0, 255).to(torch.uint8).numpy():
        pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        arr = np.asarray(Image.open(buf), dtype=np.float32) / 255
        out.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


class TransformedModel(nn.Module):
    def __init__(self, model: nn.Module, kind: str, bits: int, quality: int) -> None:
        super().__init__()
        self.model, self.kind, self.bits, self.quality = model, kind, bits, quality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = quantise(x, self.bits) if self.kind == "quantise" else jpeg(x, self.quality)
        return self.model(x)


@register("input_transform")
@dataclass
class InputTransform:
    kind: str = "quantise"
    bits: int = 4
    quality: int = 75
    name: str = "input_transform"
    honest: bool = False

    def unlearn(self, state: ProviderState) -> nn.Module:
        if self.kind not in ("quantise", "jpeg"):
            raise InputError(f"input transform must be 'quantise' or 'jpeg', got {self.kind!r}")
        return TransformedModel(state.model, self.kind, self.bits, self.quality).eval()
