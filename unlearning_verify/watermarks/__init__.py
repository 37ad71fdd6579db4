"""Watermark families, one file each. An image watermark is built from the owner's key and maps
images (N, C, H, W) in [0, 1] to triggered images; ``poison`` gives the marked training samples.

``build(key, image_shape, **params)`` picks the family named in the key. Dirty-label families relabel
marked samples to the key's target class; clean-label ones (``hidden_trigger``) keep the labels.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from labcore.errors import InputError
from unlearning_verify.keys import OwnerKey


class ImageWatermark(Protocol):
    family: str
    target: int
    clean_label: bool

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        """Query-time trigger applied to fresh images."""

    def poison(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Marked training samples and their labels."""


def dirty_label_poison(wm: ImageWatermark, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The triggered images, all labelled with the target (Guo et al.'s dirty-label marking)."""
    return wm.trigger(x), torch.full_like(y, wm.target)


def _factories() -> dict[str, Callable[..., ImageWatermark]]:
    from unlearning_verify.watermarks import blended, frequency, hidden_trigger, lowfreq, lsb, multi, patch, wanet

    return {
        "lsb": lsb.LSBWatermark.from_key,
        "blended": blended.BlendedWatermark.from_key,
        "wanet": wanet.WaNetWatermark.from_key,
        "frequency": frequency.FrequencyWatermark.from_key,
        "patch": patch.PatchWatermark.from_key,
        "hidden_trigger": hidden_trigger.HiddenTriggerWatermark.from_key,
        "lowfreq": lowfreq.LowFrequencyWatermark.from_key,
        "multi": multi.MultiMarker.from_key,
    }


IMAGE_FAMILIES = ("multi", "lsb", "blended", "wanet", "frequency", "patch", "lowfreq", "hidden_trigger")


def build(key: OwnerKey, image_shape: tuple[int, int, int], **params: object) -> ImageWatermark:
    """The image watermark of ``key.family`` for images of shape (C, H, W)."""
    factories = _factories()
    if key.family not in factories:
        raise InputError(f"unknown image watermark family {key.family!r}; choose one of: {', '.join(IMAGE_FAMILIES)}")
    try:
        return factories[key.family](key, image_shape, **params)
    except TypeError as exc:
        raise InputError(f"bad parameters for watermark {key.family!r}: {exc}") from None
