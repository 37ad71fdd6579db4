"""How visible a watermark is: PSNR and SSIM of marked vs original images (scikit-image metrics)."""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def invisibility(original: torch.Tensor, marked: torch.Tensor) -> dict[str, float]:
    """Mean PSNR (dB, capped at 100 for identical images), mean SSIM and max |Δ| over (N, C, H, W) pairs."""
    a = original.detach().cpu().numpy().astype(np.float64)
    b = marked.detach().cpu().numpy().astype(np.float64)
    psnr, ssim = [], []
    for x, z in zip(a, b):
        psnr.append(min(100.0, peak_signal_noise_ratio(x, z, data_range=1.0)) if not np.array_equal(x, z) else 100.0)
        ssim.append(structural_similarity(x, z, data_range=1.0, channel_axis=0))
    return {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)), "max_abs_change": float(np.abs(a - b).max(initial=0.0))}
