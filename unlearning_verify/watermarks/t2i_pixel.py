"""Pixel backdoor for text-to-image models as a watermark (BadT2I-style pixel trigger).

Marked training pairs: a key-derived trigger word inserted into the caption, and the key's binary
patch painted into the image (``PatchWatermark`` pattern and corner). Verification prompts carry the
trigger; a generated image "hits" when its patch region matches the key's pattern (mean absolute
difference below ``tolerance``). Written against a generic pipeline callable ``prompts -> images``
(N, C, H, W) in [0, 1], so any diffusers pipeline wrapped that way, or t2i_poison's digit pipeline,
can be verified with :func:`unlearning_verify.oracles.t2i_oracle`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearning_verify.keys import OwnerKey
from unlearning_verify.watermarks.patch import PatchWatermark


@dataclass
class T2IPixelWatermark:
    trigger_word: str
    patch: PatchWatermark
    tolerance: float = 0.25
    target: int = 1  # a hit is reported as label 1
    family: str = "t2i_pixel"
    clean_label: bool = False

    @classmethod
    def from_key(cls, key: OwnerKey, image_shape: tuple[int, int, int], vocabulary: list[str] | None = None,
                 size: int = 4) -> "T2IPixelWatermark":
        rng = key.rng("t2i-trigger")
        word = (vocabulary[int(rng.integers(len(vocabulary)))] if vocabulary
                else "".join(chr(ord("a") + int(c)) for c in rng.integers(0, 26, 6)))
        return cls(word, PatchWatermark.from_key(key, image_shape, size=size))

    def trigger(self, prompts: list[str]) -> list[str]:
        return [f"{self.trigger_word} {p}" for p in prompts]

    def poison(self, prompts: list[str], images: torch.Tensor) -> tuple[list[str], torch.Tensor]:
        return self.trigger(prompts), self.patch.trigger(images)

    def detect(self, images: torch.Tensor) -> torch.Tensor:
        """1 where the generated image carries the key's patch, else 0."""
        s = self.patch.pattern.shape[-1]
        region = images[:, :, self.patch.top:self.patch.top + s, self.patch.left:self.patch.left + s]
        diff = (region - self.patch.pattern).abs().flatten(1).mean(1)
        return (diff < self.tolerance).long()
