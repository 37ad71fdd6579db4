"""Random whole-pixel translation of images: the random-crop augmentation, at MNIST's scale.

Used where the lab trains an image model that should not read a digit's exact position: the hidden-trigger
extractor's pretraining (``tasks/head_finetune.py``, ImageNet's random crops in Saha et al. 2020) and the
BadT2I digit classifier (``t2i_poison/digit_classifier.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_translate(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) moved by its own offset in [−max_shift, max_shift]² pixels (column offsets
    drawn first, then row offsets, from ``gen``), zero fill; ``x`` itself when ``max_shift`` is 0."""
    if not max_shift:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(n, c, h, w + 2 * max_shift)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(n, c, h, w)
    return padded.gather(2, rows).gather(3, cols)
