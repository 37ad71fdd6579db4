"""Local client training as SGD on functional models, shared by the vectorized and the loop paths.

A client's data is a dict of tensors with a common first dimension. Its batch schedule (which
samples, in which step) is drawn from the client's own seed, so the vmap path (padded, masked
batches) and the per-client loop run the very same arithmetic.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from fedharness.config import LocalConfig

Batch = dict[str, torch.Tensor]
PerSampleLoss = Callable[[nn.Module, dict[str, torch.Tensor], Batch], torch.Tensor]


def num_samples(data: Batch) -> int:
    """A client's sample count: the common first dimension of its tensors."""
    return len(next(iter(data.values())))


def batch_schedule(num_samples: int, cfg: LocalConfig, seed: int) -> list[torch.Tensor]:
    """Index batches for E epochs, a fresh permutation per epoch from the client's seed."""
    g = torch.Generator().manual_seed(seed)
    steps: list[torch.Tensor] = []
    for _ in range(cfg.epochs):
        perm = torch.randperm(num_samples, generator=g)
        steps.extend(perm.split(cfg.batch_size))
    return steps


def masked_mean_loss(
    model: nn.Module, per_sample_loss: PerSampleLoss, frozen: dict[str, torch.Tensor]
) -> Callable[[dict[str, torch.Tensor], Batch, torch.Tensor], torch.Tensor]:
    """Σ wᵢ·ℓᵢ / max(Σ wᵢ, 1): the batch mean over real samples; padded ones carry w = 0."""

    def loss(params: dict[str, torch.Tensor], batch: Batch, weight: torch.Tensor) -> torch.Tensor:
        losses = per_sample_loss(model, {**frozen, **params}, batch)
        return (losses * weight).sum() / weight.sum().clamp(min=1.0)

    return loss


def sgd_steps(
    model: nn.Module,
    per_sample_loss: PerSampleLoss,
    params: dict[str, torch.Tensor],
    frozen: dict[str, torch.Tensor],
    data: Batch,
    schedule: list[torch.Tensor],
    lr: float,
) -> dict[str, torch.Tensor]:
    """One client's local training: θ ← θ − lr·∇L(θ; batch) over its schedule.

    Plain reverse-mode autograd on leaf copies of θ, updated in place: the same arithmetic as
    ``torch.func.grad`` at a fraction of its per-operation dispatch cost on batches of 10.
    """
    leaves = {k: p.detach().clone().requires_grad_(True) for k, p in params.items()}
    tensors = list(leaves.values())
    loss = masked_mean_loss(model, per_sample_loss, frozen)
    device = tensors[0].device if tensors else torch.device("cpu")
    ones = {n: torch.ones(n, device=device) for n in {len(idx) for idx in schedule}}
    for idx in schedule:
        batch = {k: v[idx] for k, v in data.items()}
        grads = torch.autograd.grad(loss(leaves, batch, ones[len(idx)]), tensors, allow_unused=True, materialize_grads=True)
        with torch.no_grad():
            for p, g in zip(tensors, grads):
                p.sub_(lr * g)
    return {k: p.detach() for k, p in leaves.items()}


def module_state(model: nn.Module, names: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split the model's state into federated (``names``) and frozen tensors (rest + buffers)."""
    trainable = set(names)
    frozen = {k: v.detach() for k, v in model.named_parameters() if k not in trainable}
    frozen.update({k: v.detach() for k, v in model.named_buffers()})
    return {k: v.detach() for k, v in model.named_parameters() if k in trainable}, frozen
