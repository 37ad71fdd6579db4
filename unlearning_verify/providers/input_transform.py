"""D6 (dishonest): keep the data, but purify every query before the model sees it.

Purifications (reference §3, D6): bit-depth quantisation to ``bits`` bits (4 erases the LSB
watermark's planes), JPEG re-encoding (Pillow, ``quality``), Gaussian blur (σ = ``sigma``) and median
denoising (3×3). The served model is the original one behind the transform. Registered as
``input_transform`` (any ``kind``) and ``purify_jpeg``, ``purify_blur``, ``purify_median``.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from labcore.errors import InputError
from unlearning_verify.providers import ProviderState, register, require

KINDS = ("quantise", "jpeg", "blur", "median")


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


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with a 3σ-wide kernel, reflect padding."""
    radius = max(1, int(round(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    out = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def median(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Median filter (size × size window, reflect padding): the classic denoiser."""
    r = size // 2
    n, c, h, w = x.shape
    patches = F.unfold(F.pad(x, (r, r, r, r), mode="reflect"), size)  # (n, c·size², h·w)
    return patches.view(n, c, size * size, h * w).median(dim=2).values.view(n, c, h, w)


def purify(x: torch.Tensor, kind: str, bits: int = 4, quality: int = 75, sigma: float = 0.8) -> torch.Tensor:
    """Apply the named purification."""
    if kind == "quantise":
        return quantise(x, bits)
    if kind == "jpeg":
        return jpeg(x, quality)
    if kind == "blur":
        return blur(x, sigma)
    if kind == "median":
        return median(x)
    raise InputError(f"input transform must be one of {', '.join(KINDS)}, got {kind!r}")


class TransformedModel(nn.Module):
    def __init__(self, model: nn.Module, kind: str, bits: int, quality: int, sigma: float = 0.8) -> None:
        super().__init__()
        self.model, self.kind, self.bits, self.quality, self.sigma = model, kind, bits, quality, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(purify(x, self.kind, self.bits, self.quality, self.sigma))


@register("input_transform")
@dataclass
class InputTransform:
    kind: str = "quantise"
    bits: int = 4
    quality: int = 75
    sigma: float = 0.8
    name: str = "input_transform"
    honest: bool = False
    reads_train = ()

    def __post_init__(self) -> None:
        require(self.name, "kind", self.kind, self.kind in KINDS, f"one of {', '.join(KINDS)}")
        require(self.name, "bits", self.bits, 1 <= self.bits <= 8, "an integer in 1..8")
        require(self.name, "quality", self.quality, 1 <= self.quality <= 100, "an integer in 1..100 (JPEG quality)")
        require(self.name, "sigma", self.sigma, math.isfinite(self.sigma) and self.sigma > 0, "a finite number > 0")

    def unlearn(self, state: ProviderState) -> nn.Module:
        return TransformedModel(state.model, self.kind, self.bits, self.quality, self.sigma).eval()


for _kind in ("jpeg", "blur", "median"):
    register(f"purify_{_kind}")(partial(InputTransform, kind=_kind, name=f"purify_{_kind}"))
