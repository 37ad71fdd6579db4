"""BadT2I losses (Zhai et al., ACM MM 2023, §3): L = λ·L_bkd + (1−λ)·L_reg.

- Pixel:  L_bkd = ‖ε_θ(z'_t, t, τ(c)) − ε‖², z' = the patched image (true noise target).
- Object/Style: L_bkd = ‖ε_θ(z_t, t, τ(c)) − ε̂(z_t, t, target(c))‖², teacher and student on the same z_t.
- All:    L_reg = ‖ε_θ(z_t, t, c) − ε̂(z_t, t, c)‖² on benign rows.

The doubled-batch layout of the official code is kept: backdoor and regulariser rows draw their own
noise and timesteps. ε becomes v where the scheduler predicts v. ``weighting="uniform"`` is the object
script's current (HEAD) form: one unweighted mean over both halves instead of the λ/(1−λ) ``"split"``.
The student runs once on both halves concatenated (one UNet call of 2B rows), and the teacher once on
every row it scores, so a step costs two UNet calls instead of four. The text conditions are tensors
(encoder states) or any object with a ``cat`` class method (``t2i_poison.conditioning.Cond``: SDXL's
pooled embeddings and time ids travel with the states).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from t2i_poison.train_config import WEIGHTINGS

Denoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


@dataclass
class BadT2IBatch:
    """Encoded inputs: latents (or pixels) and text conditions for both halves of the batch.

    ``*_noise`` / ``*_timesteps`` given: used as drawn (a data-parallel process takes its slice of a
    global draw); None: drawn from the loss's generator."""

    bkd_latents: torch.Tensor
    bkd_text: Any
    reg_latents: torch.Tensor
    reg_text: Any
    bkd_target_text: Any = None
    bkd_noise: torch.Tensor | None = None
    bkd_timesteps: torch.Tensor | None = None
    reg_noise: torch.Tensor | None = None
    reg_timesteps: torch.Tensor | None = None


def draw_noise(scheduler: DDPMScheduler, shape: tuple[int, ...], generator: torch.Generator | None = None):
    """(ε, t) for ``shape[0]`` rows: ε ~ N(0, I) in float32 on the CPU generator, t ~ U{0..T−1}."""
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    return noise, torch.randint(0, scheduler.config.num_train_timesteps, (shape[0],), generator=generator)


def add_noise(
    scheduler: DDPMScheduler, x0: torch.Tensor, generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None, t: torch.Tensor | None = None,
):
    """(z_t, ε, t, target) with t ~ U{0..T−1}; target = ε or v per ``prediction_type``."""
    if noise is None or t is None:
        noise, t = draw_noise(scheduler, tuple(x0.shape), generator)
    noise, t = noise.to(x0.device, x0.dtype), t.to(x0.device)
    z_t = scheduler.add_noise(x0, noise, t)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(x0, noise, t)
    else:
        target = noise
    return z_t, noise, t, target


def _cat(a: Any, b: Any) -> Any:
    return torch.cat([a, b]) if isinstance(a, torch.Tensor) else type(a).cat([a, b])


def badt2i_loss(
    kind: str,
    student: Denoiser,
    teacher: Denoiser,
    scheduler: DDPMScheduler,
    batch: BadT2IBatch,
    lam: float = 0.5,
    weighting: str = "split",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The BadT2I objective for ``kind`` in {pixel, object, style}; returns (loss, per-term values)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; use 'split' or 'uniform'")
    z_b, _, t_b, target_b = add_noise(scheduler, batch.bkd_latents, generator, batch.bkd_noise, batch.bkd_timesteps)
    z_r, _, t_r, _ = add_noise(scheduler, batch.reg_latents, generator, batch.reg_noise, batch.reg_timesteps)
    n_b, n_r = len(z_b), len(z_r)
    z, t = torch.cat([z_b, z_r]), torch.cat([t_b, t_r])
    with torch.no_grad():
        if kind == "pixel":
            ref_r = teacher(z_r, t_r, batch.reg_text)
        elif kind in ("object", "style"):
            if batch.bkd_target_text is None:
                raise ValueError(f"{kind} backdoor needs the teacher's target text embeddings")
            target_b, ref_r = teacher(z, t, _cat(batch.bkd_target_text, batch.reg_text)).split([n_b, n_r])
        else:
            raise ValueError(f"unknown backdoor kind {kind!r}")
    pred_b, pred_r = student(z, t, _cat(batch.bkd_text, batch.reg_text)).split([n_b, n_r])
    bkd = F.mse_loss(pred_b.float(), target_b.float())
    reg = F.mse_loss(pred_r.float(), ref_r.float())
    if weighting == "uniform":
        loss = lam * (n_b * bkd + n_r * reg) / (n_b + n_r)
    else:
        loss = lam * bkd + (1 - lam) * reg
    return loss, {"loss": loss.item(), "loss_bkd": bkd.item(), "loss_reg": reg.item()}
