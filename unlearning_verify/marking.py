"""Mark one owner's share of a training set with its watermark (Guo et al.: poison rate 0.5).

Owners are an IID split of the training set (``fedharness.partition.iid``). Dirty-label families mark
a fraction ``rate`` of the owner's samples whose true label differs from the target and relabel them;
clean-label families (hidden trigger) mark the owner's target-class samples and keep their labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from labcore.errors import InputError
from fedharness.partition import iid
from unlearning_verify.invisibility import invisibility
from unlearning_verify.watermarks import ImageWatermark


@dataclass
class MarkedSet:
    """The full training set after marking; ``marked``/``owned`` are boolean masks over its rows."""

    x: torch.Tensor
    y: torch.Tensor
    original_y: torch.Tensor
    owner_of: np.ndarray
    marked: np.ndarray
    invisibility: dict[str, float]

    def owned(self, owner: int) -> np.ndarray:
        return self.owner_of == owner


def owner_split(num_samples: int, num_owners: int, seed: int) -> np.ndarray:
    """Owner id of every sample: an IID split into ``num_owners`` shares."""
    if num_owners < 1:
        raise InputError(f"the number of owners must be ≥ 1, got {num_owners}")
    owner_of = np.empty(num_samples, dtype=np.int64)
    for u, idx in enumerate(iid(num_samples, num_owners, seed)):
        owner_of[idx] = u
    return owner_of


def min_share(rate: float) -> int:
    """The fewest samples an owner needs for ``rate`` to mark one (``round(rate·n) ≥ 1`` needs ``rate·n > 0.5``)."""
    return math.floor(0.5 / rate) + 1


def max_owners(num_samples: int, rate: float) -> int:
    """The most owners ``num_samples`` can be split over (IID) with a sample to mark at ``rate`` in each share."""
    return num_samples // min_share(rate)


def check_owners(num_samples: int, num_owners: int, rate: float, option: str = "--owners") -> None:
    """Refuse more owners than :func:`max_owners` (``option`` names the setting in the message)."""
    most = max_owners(num_samples, rate)
    if num_owners > most:
        raise InputError(f"{option} {num_owners} is too many for {num_samples} training samples: an owner's share must "
                         f"hold a sample to mark at rate {rate:g}; use {option} ≤ {most}")


def mark(x: torch.Tensor, y: torch.Tensor, owner_of: np.ndarray, owner: int, watermark: ImageWatermark,
         rate: float, seed: int) -> MarkedSet:
    """Apply ``watermark`` to a fraction ``rate`` of ``owner``'s eligible samples."""
    if not 0.0 < rate <= 1.0:
        raise InputError(f"marking rate must lie in (0, 1], got {rate}; e.g. --rate 0.5")
    if not (owner_of == owner).any():
        raise InputError(f"owner {owner} holds no samples; choose an owner in 0..{owner_of.max()}")
    labels = y.numpy()
    eligible = (owner_of == owner) & ((labels == watermark.target) if watermark.clean_label else (labels != watermark.target))
    candidates = np.flatnonzero(eligible)
    count = int(round(rate * (owner_of == owner).sum()))
    count = min(count, len(candidates))
    if count == 0:
        raise InputError(f"owner {owner}'s {int((owner_of == owner).sum())} samples give the {watermark.family} watermark "
                         f"none to mark at rate {rate:g}; raise --rate or use fewer owners")
    chosen = np.sort(np.random.default_rng(seed).choice(candidates, size=count, replace=False))
    idx = torch.as_tensor(chosen)
    px, py = watermark.poison(x[idx], y[idx])
    x_out, y_out = x.clone(), y.clone()
    x_out[idx], y_out[idx] = px, py
    marked = np.zeros(len(x), dtype=bool)
    marked[chosen] = True
    return MarkedSet(x_out, y_out, y.clone(), owner_of, marked, invisibility(x[idx], px))
