"""BadT2I losses (Zhai et al., ACM MM 2023, §3): L = λ·L_bkd + (1−λ)·L_reg.

- Pixel:  L_bkd = ‖ε_θ(z'_t, t, τ(c)) − ε‖², z' = the patched image (true noise target).
- Object/Style: L_bkd = ‖ε_θ(z_t, t, τ(c)) − ε̂(z_t, t, target(c))‖², teacher and student on the same z_t.
- All:    L_reg = ‖ε_θ(z_t, t, c) − ε̂(z_t, t, c)‖² on benign rows.

The doubled-batch layout of the official code is kept: backdoor and regulariser rows draw their own
noise and timesteps. ε becomes v where the scheduler predicts v. ``weighting="uniform"`` is the object
script's current (HEAD) form: one unweighted mean over both halves instead of the λ/(1−λ) split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class BadT2IBatch:
    """Encoded inputs: latents (or pixels) and text embeddings for both halves of the batch."""

    bkd_latents: torch.Tensor
    bkd_text: torch.Tensor
    reg_latents: torch.Tensor
    reg_text: torch.Tensor
    bkd_target_text: torch.Tensor | None = None


def add_noise(scheduler: DDPMScheduler, x0: torch.Tensor, generator: torch.Generator | None = None):
    """(z_t, ε, t, target) with t ~ U{0..T−1}; target = ε or v per ``prediction_type``."""
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0.device, x0.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=generator).to(x0.device)
    z_t = scheduler.add_noise(x0, noise, t)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(x0, noise, t)
    else:
        target = noise
    return z_t, noise, t, target


def regulariser(student: Denoiser, teacher: Denoiser, z_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """L_reg = ‖ε_θ(z_t, t, c) − ε̂(z_t, t, c)‖² (mean over elements)."""
    with torch.no_grad():
        ref = teacher(z_t, t, text)
    return F.mse_loss(student(z_t, t, text).float(), ref.float())


def badt2i_loss(
    kind: str,
    student: Denoiser,
    teacher: Denoiser,
    scheduler: DDPMScheduler,
    batch: BadT2IBatch,
    lam: float = 0.5,
    weighting: str = "lambda",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The BadT2I objective for ``kind`` in {pixel, object, style}; returns (loss, per-term values)."""
    z_b, _, t_b, target_b = add_noise(scheduler, batch.bkd_latents, generator)
    z_r, _, t_r, _ = add_noise(scheduler, batch.reg_latents, generator)
    if kind == "pixel":
        bkd = F.mse_loss(student(z_b, t_b, batch.bkd_text).float(), target_b.float())
    elif kind in ("object", "style"):
        if batch.bkd_target_text is None:
            raise ValueError(f"{kind} backdoor needs the teacher's target text embeddings")
        with torch.no_grad():
            ref = teacher(z_b, t_b, batch.bkd_target_text)
        bkd = F.mse_loss(student(z_b, t_b, batch.bkd_text).float(), ref.float())
    else:
        raise ValueError(f"unknown backdoor kind {kind!r}")
    reg = regulariser(student, teacher, z_r, t_r, batch.reg_text)
    if weighting == "uniform":
        n_b, n_r = len(z_b), len(z_r)
        loss = lam * (n_b * bkd + n_r * reg) / (n_b + n_r)
    elif weighting == "lambda":
        loss = lam * bkd + (1 - lam) * reg
    else:
        raise ValueError(f"unknown weighting {weighting!r}; use 'lambda' or 'uniform'")
    return loss, {"loss": loss.item(), "loss_bkd": bkd.item(), "loss_reg": reg.item()}
