"""Clipping plus Gaussian noise: weak DP (Sun et al. 2019) and central DP with fixed clipping.

- ``weak_dp``: clip each update to ρ, average, add N(0, σ²) per coordinate (Sun et al., "Can You
  Really Backdoor Federated Learning?", §4: noise far below a formal DP level still blunts backdoors).
- ``central_dp``: clip each update to C, average, add N(0, (z·C/m)²) — the server-side fixed-clipping
  mechanism of McMahan et al. (ICLR 2018) as in Flower's ``DifferentialPrivacyServerSideFixedClipping``.

Noise is drawn from a generator seeded by (seed, round) so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedharness.aggregators import register
from fedharness.aggregators._finite import drop_nonfinite, round_generator
from fedharness.aggregators.norm_clip import clip_rows
from fedharness.config import finite, positive
from labcore.errors import InputError


def gaussian(like: torch.Tensor, std: float, context: dict, salt: int) -> torch.Tensor:
    g = round_generator(context, salt, like.device)
    return torch.randn(like.shape, generator=g, device=like.device, dtype=like.dtype) * std


@register("weak_dp")
@dataclass
class WeakDP:
    """Clip to ``rho``, mean, add N(0, ``sigma``²)."""

    rho: float = 1.0
    sigma: float = 0.01

    def __post_init__(self) -> None:
        if not (positive(self.rho) and finite(self.sigma) and self.sigma >= 0):
            raise InputError(f"weak_dp needs a finite rho > 0 and sigma >= 0, got rho={self.rho}, sigma={self.sigma}")

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        mean = clip_rows(drop_nonfinite(updates, stats), self.rho).mean(dim=0)
        return mean + gaussian(mean, self.sigma, context, salt=11)


@register("central_dp")
@dataclass
class CentralDP:
    """Clip to ``clip``, mean over m, add N(0, (``noise_multiplier``·clip/m)²)."""

    clip: float = 1.0
    noise_multiplier: float = 1.0

    def __post_init__(self) -> None:
        if not (positive(self.clip) and finite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise InputError(f"central_dp needs a finite clip > 0 and noise_multiplier >= 0, got clip={self.clip}, "
                             f"noise_multiplier={self.noise_multiplier}")

    def __call__(self, updates: torch.Tensor, stats: dict | None = None, **context: object) -> torch.Tensor:
        u = drop_nonfinite(updates, stats)
        mean = clip_rows(u, self.clip).mean(dim=0)
        return mean + gaussian(mean, self.noise_multiplier * self.clip / u.shape[0], context, salt=13)
