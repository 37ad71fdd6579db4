"""Short, seeded centralised training of the lab's SmallCNN: what a simulated provider runs.

Adam on mini-batches; the learning rate follows a cosine decay to zero over all steps (default), so
the final model has converged instead of stopping on a noisy constant-lr step: at a constant lr the
owner's watermark can be half-forgotten by the last epoch (measured: p̂ 0.98 → 0.72 on one seed).
Every epoch's weights are kept as checkpoints (for the stale-model and SISA providers).
Deterministic for a given seed on one thread. ``STEP_HOOK`` (a context variable, None by default)
receives (loss, lr) after every optimiser step: the CLI's progress bar and tracker, without I/O here.
"""

from __future__ import annotations

import copy
import math
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from labcore.errors import InputError
from fedharness.tasks.image_classification import SmallCNN


STEP_HOOK: ContextVar[Callable[[float, float], None] | None] = ContextVar("STEP_HOOK", default=None)


@dataclass
class TrainConfig:
    """Adam(lr) for ``epochs`` epochs of ``batch_size`` mini-batches; ``schedule`` cosine or constant."""

    epochs: int = 5
    lr: float = 2e-3
    batch_size: int = 64
    schedule: Literal["cosine", "constant"] = "cosine"


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the base lr at ``step`` of ``total``: 1 (constant) or ½(1 + cos(π·step/total))."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
    raise InputError(f"unknown learning-rate schedule {schedule!r}; choose cosine or constant")


def build_model(x: torch.Tensor, num_classes: int, seed: int) -> SmallCNN:
    """A freshly initialised SmallCNN for images shaped like ``x``."""
    torch.manual_seed(seed)
    return SmallCNN(x.shape[-1], num_classes, x.shape[1])


def train(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, seed: int, *, ascent: bool = False
) -> list[dict[str, torch.Tensor]]:
    """Train ``model`` in place on (x, y); returns a state-dict checkpoint after every epoch.

    ``ascent`` maximises the loss instead (gradient ascent / NegGrad unlearning).
    """
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    total = cfg.epochs * math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(cfg.schedule, step, total))
    sign = -1.0 if ascent else 1.0
    checkpoints = []
    hook = STEP_HOOK.get()
    model.train()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(x), generator=g).split(cfg.batch_size):
            loss = sign * F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if hook is not None:
                hook(float(loss.detach()), sched.get_last_lr()[0])
            sched.step()
        checkpoints.append(copy.deepcopy(model.state_dict()))
    model.eval()
    return checkpoints


def fit(x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: TrainConfig, seed: int) -> tuple[nn.Module, list]:
    """A new model trained from scratch on (x, y), with its per-epoch checkpoints."""
    model = build_model(x, num_classes, seed)
    return model, train(model, x, y, cfg, seed)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels (label-only black-box access)."""
    model.eval()
    return torch.cat([model(c).argmax(1) for c in x.split(batch_size)]) if len(x) else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def probabilities(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Softmax class probabilities (what a provider serving scores returns)."""
    model.eval()
    return torch.cat([model(c).softmax(1) for c in x.split(batch_size)])


@torch.no_grad()
def per_sample_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Cross-entropy of every sample (for membership inference)."""
    model.eval()
    return torch.cat([F.cross_entropy(model(cx), cy, reduction="none") for cx, cy in zip(x.split(batch_size), y.split(batch_size))])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x) == y).float().mean())
