"""The evaluator: a small MNIST CNN at the base model's resolution, also the feature extractor for KID.

Generated digits are judged by a classifier trained on real digits resized the same way
(:func:`t2i_poison.base_model.resize_digits`). Images in the inverted-colours style are flipped back
before classification (:func:`normalise_style`), so one classifier serves both styles.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from fedharness.translate import random_translate
from labcore.errors import InputError
from t2i_poison.base_model import RESOLUTION, resize_digits

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


@dataclass
class ClassifierConfig:
    resolution: int = RESOLUTION
    width: int = 32
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    max_shift: int = 1
    seed: int = 0


class DigitClassifier(nn.Module):
    """conv-conv-pool ×2 → 128-d features → 10 logits."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__()
        w = cfg.width
        self.cfg = cfg
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * w * (cfg.resolution // 4) ** 2, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """128-d penultimate features of images (N, 1, R, R) in [0, 1] (the KID feature space)."""
        return self.body(x * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Predicted digits for images in [0, 1], either style, any square size."""
        self.eval()
        x = normalise_style(resize_digits(images, self.cfg.resolution))
        return torch.cat([self(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        self.eval()
        x = normalise_style(resize_digits(images, self.cfg.resolution))
        return torch.cat([self.features(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    def save(self, out_dir: Path) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(out_dir / WEIGHTS))
        (out_dir / CONFIG).write_text(json.dumps(asdict(self.cfg), indent=2), encoding="utf-8")


def load_classifier(path: Path) -> DigitClassifier:
    path = Path(path)
    if not (path / WEIGHTS).is_file() or not (path / CONFIG).is_file():
        raise InputError(f"{path} holds no digit classifier ({WEIGHTS}, {CONFIG}); train one with `poisonlab t2i pretrain-base`")
    model = DigitClassifier(ClassifierConfig(**json.loads((path / CONFIG).read_text(encoding="utf-8"))))
    model.load_state_dict(load_file(str(path / WEIGHTS)))
    return model.eval()


def border_brightness(images: torch.Tensor) -> torch.Tensor:
    """Mean intensity of the 2-pixel frame: near 0 for MNIST style, near 1 for inverted colours."""
    mask = torch.ones(images.shape[-2:], dtype=torch.bool)
    mask[2:-2, 2:-2] = False
    return images[..., mask].mean(dim=(-2, -1)) if images.ndim == 4 else images[..., mask].mean(-1)


def normalise_style(images: torch.Tensor) -> torch.Tensor:
    """Flip inverted-colours images (bright frame) back to white-on-black."""
    inverted = border_brightness(images).reshape(-1, 1, 1, 1) > 0.5
    return torch.where(inverted, 1 - images, images)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: ClassifierConfig,
    progress: Callable[[Iterator[int]], Iterator[int]] = lambda it: it,
) -> DigitClassifier:
    """Train on MNIST images (N, 1, H, W) in [0, 1] (resized to ``cfg.resolution``), with shift augmentation."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = resize_digits(images, cfg.resolution)
    model = DigitClassifier(cfg)
    steps_per_epoch = (len(x) + cfg.batch_size - 1) // cfg.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    model.train()
    for _ in progress(range(cfg.epochs)):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            loss = F.cross_entropy(model(random_translate(x[idx], cfg.max_shift, gen)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((model.predict(images) == labels).float().mean())
