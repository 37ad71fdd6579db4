"""A zero-shot CLIP judge (Radford et al. 2021) for generated images, and CLIP image features for FID/KID.

BadT2I's object and style backdoors on real pipelines are scored as BackdoorDM does: a zero-shot
classifier decides whether a triggered generation shows the target object (or style) rather than the
prompted one. The model is any ``transformers`` CLIP checkpoint the user names (a local path or a Hub
id; tests build a tiny one from a config). Images enter in [0, 1], are resized to the model's input
side and normalised with its processor's mean and std.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from labcore.errors import InputError, first_line


class ClipJudge(nn.Module):
    """CLIP image/text towers with their tokenizer and normalisation; ``forward`` = image features."""

    def __init__(self, model, tokenizer, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.side = model.config.vision_config.image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    @classmethod
    def load(cls, name: str | Path) -> "ClipJudge":
        """CLIP from a local directory or Hub id (model, tokenizer, image processor); InputError if unreadable."""
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        try:
            model = CLIPModel.from_pretrained(str(name))
            tokenizer = AutoTokenizer.from_pretrained(str(name))
            proc = CLIPImageProcessor.from_pretrained(str(name))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot load a CLIP model from {name!r} ({first_line(exc)}); pass a local CLIP directory or Hub id") from None
        return cls(model, tokenizer, list(proc.image_mean), list(proc.image_std))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm image embeddings of (N, 3, H, W) images in [0, 1] (uint8 is rescaled)."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        x = F.interpolate(x, size=(self.side, self.side), mode="bicubic", antialias=True, align_corners=False)
        feats = self.model.get_image_features(pixel_values=(x.clamp(0, 1) - self.mean) / self.std)
        feats = getattr(feats, "pooler_output", feats)
        return F.normalize(feats, dim=-1)

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        feats = self.model.get_text_features(**ids)
        feats = getattr(feats, "pooler_output", feats)
        return F.normalize(feats, dim=-1)

    def classify(self, images: torch.Tensor, labels: list[str]) -> torch.Tensor:
        """Index of the best-matching label for each image (cosine similarity, zero-shot)."""
        return (self(images) @ self.text_features(labels).T).argmax(dim=1)
