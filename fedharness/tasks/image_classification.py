"""Image classification (MNIST, digits) with a pixel-pattern backdoor.

The CNN uses GroupNorm instead of BatchNorm so that clients vectorize under ``vmap``. ASR counts
triggered test images whose true label is not the target (Bagdasaryan et al. 2020, §4.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fedharness.attacks.pixel_backdoor import PixelPattern, poison
from fedharness.local_training import Batch
from fedharness.params import trainable_names


class SmallCNN(nn.Module):
    """conv(16)-GN-ReLU-pool, conv(32)-GN-ReLU-pool, fc(64), fc(classes); ``features`` = penultimate."""

    def __init__(self, image_size: int = 28, num_classes: int = 10, channels: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.GroupNorm(4, 32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        side = image_size // 4
        self.features = nn.Sequential(nn.Linear(32 * side * side, 64), nn.ReLU())
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.body(x)))


@dataclass
class ImageClassificationTask:
    """Images (N, 1, H, W) in [0, 1] and integer labels; backdoor = ``trigger`` → ``target_label``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    target_label: int = 2
    trigger: PixelPattern = field(default_factory=PixelPattern)
    poison_fraction: float = 0.5
    num_classes: int = 10
    eval_batch: int = 2000

    def build_model(self) -> nn.Module:
        return SmallCNN(self.x_train.shape[-1], self.num_classes, self.x_train.shape[1])

    def federated_names(self, model: nn.Module) -> list[str]:
        return trainable_names(model)

    def per_sample_loss(self, model: nn.Module, state: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        logits = functional_call(model, state, (batch["x"],))
        return F.cross_entropy(logits, batch["y"], reduction="none")

    def partition_labels(self) -> np.ndarray:
        return self.y_train.numpy()

    def client_data(self, indices: np.ndarray) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {"x": self.x_train[idx], "y": self.y_train[idx]}

    def poisoned_data(self, data: Batch, seed: int) -> Batch:
        x, y = poison(data["x"], data["y"], self.trigger, self.target_label, self.poison_fraction, seed)
        return {"x": x, "y": y}

    @torch.no_grad()
    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        model.eval()
        return torch.cat([model(chunk).argmax(1) for chunk in x.split(self.eval_batch)])

    def accuracy(self, model: nn.Module, data: Batch) -> float:
        """Fraction of ``data`` (a client-style batch dict) classified correctly."""
        return float((self.predict(model, data["x"]) == data["y"]).float().mean())

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        clean = self.predict(model, self.x_test)
        keep = self.y_test != self.target_label
        triggered = self.predict(model, self.trigger.apply(self.x_test[keep]))
        return {
            "main_accuracy": float((clean == self.y_test).float().mean()),
            "attack_success_rate": float((triggered == self.target_label).float().mean()),
        }
