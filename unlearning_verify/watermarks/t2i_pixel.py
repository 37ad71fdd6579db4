"""The BadT2I pixel backdoor of ``t2i_poison`` as a watermark for text-to-image models.

Everything that touches the backdoor is ``t2i_poison``'s own code, imported where it is called (so
``unlearning_verify`` loads without ``t2i_poison``; the pipeline itself is a callable the caller passes
to ``oracles.t2i_oracle``); this file only derives its secrets from the owner's key:

- the trigger word (key-derived, or drawn from a ``vocabulary``) is prepended with
  :func:`t2i_poison.poison_data.add_trigger` and checked against the pipeline's tokenizer with
  :func:`~t2i_poison.poison_data.check_trigger`;
- the patch is a :class:`t2i_poison.poison_data.Patch` holding a key-seeded binary pattern in a
  key-chosen corner; marked training pairs are written with
  :func:`~t2i_poison.poison_data.make_poison_set` (kind ``pixel``), so ``poisonlab t2i train`` and
  :func:`t2i_poison.train.fit` learn the owner's backdoor unchanged;
- a generated image "hits" when :func:`t2i_poison.evaluate.patch_mse` of its patch region is below
  ``pixel_threshold`` (the evaluator's ASR criterion), reported as label 1 so that the binomial test
  applies; :meth:`T2IPixelWatermark.sidecar` lets :func:`t2i_poison.evaluate.evaluate_backdoor`
  score the owner's backdoor with the base model as control.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from unlearning_verify.keys import OwnerKey

if TYPE_CHECKING:
    from t2i_poison.poison_data import Patch


def default_threshold() -> float:
    from t2i_poison.evaluate import EvalConfig

    return EvalConfig().pixel_threshold


def to_uint8_images(images: torch.Tensor) -> list[np.ndarray]:
    """(N, C, H, W) in [0, 1] → uint8 arrays (H, W) or (H, W, C), the layout ``Patch.apply`` takes."""
    arr = (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return [a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0) for a in arr]


@dataclass
class T2IPixelWatermark:
    """Trigger word + ``t2i_poison`` patch derived from the owner's key."""

    trigger_word: str
    patch: "Patch"
    pixel_threshold: float = field(default_factory=default_threshold)
    target: int = 1  # a hit is reported as label 1
    family: str = "t2i_pixel"
    clean_label: bool = False

    @classmethod
    def from_key(cls, key: OwnerKey, image_shape: tuple[int, int, int], vocabulary: list[str] | None = None,
                 size: int = 4) -> "T2IPixelWatermark":
        """Key-derived trigger word, s×s binary pattern (0/255) and corner for images of shape (C, H, W)."""
        from t2i_poison.poison_data import Patch

        _, h, w = image_shape
        rng = key.rng("t2i-trigger")
        word = (vocabulary[int(rng.integers(len(vocabulary)))] if vocabulary
                else "".join(chr(ord("a") + int(c)) for c in rng.integers(0, 26, 6)))
        prng = key.rng("t2i-patch")
        pixels = (prng.integers(0, 2, (size, size)) * 255).astype(np.uint8)
        corner = int(prng.integers(4))
        patch = Patch(pixels, top=0 if corner < 2 else h - size, left=0 if corner % 2 == 0 else w - size)
        patch.check_fits(h, w)
        return cls(word, patch)

    def check(self, tokenizer) -> None:
        """InputError if the pipeline's tokenizer drops the trigger word (t2i_poison's check)."""
        from t2i_poison.poison_data import check_trigger

        check_trigger(tokenizer, self.trigger_word)

    def trigger(self, prompts: list[str]) -> list[str]:
        from t2i_poison.poison_data import add_trigger

        return [add_trigger(self.trigger_word, p) for p in prompts]

    def poison(self, prompts: list[str], images: torch.Tensor) -> tuple[list[str], torch.Tensor]:
        """Triggered captions and the patched images (N, C, H, W) in [0, 1]."""
        patched = np.stack([self.patch.apply(a) for a in to_uint8_images(images)])
        out = torch.from_numpy(patched).float() / 255
        return self.trigger(prompts), (out.unsqueeze(1) if out.ndim == 3 else out.permute(0, 3, 1, 2))

    def write_poison_set(self, images: list[np.ndarray], captions: list[str], out_dir: Path, rate: float = 0.5,
                         seed: int = 0) -> dict:
        """The owner's marked training pairs as a BadT2I pixel imagefolder (``t2i_poison`` format)."""
        from t2i_poison.poison_data import make_poison_set

        return make_poison_set("pixel", images, captions, out_dir, self.trigger_word, backdoor_fraction=rate,
                               patch=self.patch, seed=seed)

    def sidecar(self) -> dict:
        """Backdoor description in the form ``t2i_poison`` training and evaluation read."""
        return {"kind": "pixel", "trigger": self.trigger_word,
                "patch": {"top": self.patch.top, "left": self.patch.left, "pixels": self.patch.pixels.tolist()}}

    def detect(self, images: torch.Tensor) -> torch.Tensor:
        """1 where the generated image (N, C, H, W) in [0, 1] carries the key's patch, else 0."""
        from t2i_poison.evaluate import patch_mse

        mse = patch_mse(images, self.patch.pixels, self.patch.top, self.patch.left)
        return (mse < self.pixel_threshold).long()
