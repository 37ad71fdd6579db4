"""Report sections for unlearning verification: example marked images, verdict tables."""

from __future__ import annotations

import torch

from poisonlab.report import Report
from unlearning_verify.watermarks import ImageWatermark


def marked_examples(report: Report, watermarks: dict[str, ImageWatermark], images: torch.Tensor, caption: str) -> None:
    """One row per family: the original images, then the triggered ones, then |Δ| ×10."""
    shown, labels = [], []
    for family, wm in watermarks.items():
        trig = wm.trigger(images)
        for i in range(len(images)):
            shown += [images[i, 0].numpy(), trig[i, 0].numpy(), ((trig[i, 0] - images[i, 0]).abs() * 10).clamp(0, 1).numpy()]
            labels += ["original", f"{family} → {wm.target}", "|Δ|×10"]
    report.image_grid(shown, labels, ncols=3 * len(images), caption=caption)
