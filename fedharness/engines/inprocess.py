"""In-process engine: clients that share an architecture train together under ``torch.func.vmap``.

Path choice: the vectorized path runs when ``vectorize`` is true (or 'auto' and more than one client
trains with the same local config); each chunk of ``chunk_size`` clients steps in lock-step on padded
batches whose padding has weight 0, so its arithmetic equals the per-client loop (the fallback,
used for a single client, for ``vectorize: false`` and for models vmap cannot batch, e.g. ones with
BatchNorm running statistics or dropout in train mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.func import grad, vmap

from fedharness.local_training import (
    Batch,
    LocalConfig,
    PerSampleLoss,
    batch_schedule,
    masked_mean_loss,
    module_state,
    sgd_steps,
)
from fedharness.params import split_vector


@dataclass
class InProcessEngine:
    """Trains a list of clients from one global vector and returns their local vectors (m, d)."""

    model: nn.Module
    names: list[str]
    per_sample_loss: PerSampleLoss
    vectorize: bool | Literal["auto"] = "auto"
    chunk_size: int = 32

    def uses_vmap(self, num_clients: int) -> bool:
        return self.vectorize is True or (self.vectorize == "auto" and num_clients > 1)

    def train(
        self, global_vec: torch.Tensor, datasets: list[Batch], cfg: LocalConfig, seeds: list[int]
    ) -> torch.Tensor:
        """Local models of each client, flattened in ``names`` order."""
        schedules = [batch_schedule(_size(d), cfg, s) for d, s in zip(datasets, seeds)]
        if not self.uses_vmap(len(datasets)):
            return torch.stack([self._train_one(global_vec, d, sch, cfg.lr) for d, sch in zip(datasets, schedules)])
        out = []
        for start in range(0, len(datasets), self.chunk_size):
            stop = start + self.chunk_size
            out.append(self._train_chunk(global_vec, datasets[start:stop], schedules[start:stop], cfg))
        return torch.cat(out)

    def _train_one(self, global_vec: torch.Tensor, data: Batch, schedule: list[torch.Tensor], lr: float) -> torch.Tensor:
        _, frozen = module_state(self.model, self.names)
        params = {k: v.clone() for k, v in split_vector(global_vec, self.model, self.names).items()}
        params = sgd_steps(self.model, self.per_sample_loss, params, frozen, data, schedule, lr)
        return torch.cat([params[n].reshape(-1) for n in self.names])

    def _train_chunk(
        self, global_vec: torch.Tensor, datasets: list[Batch], schedules: list[list[torch.Tensor]], cfg: LocalConfig
    ) -> torch.Tensor:
        c, b = len(datasets), cfg.batch_size
        num_steps = max((len(s) for s in schedules), default=0)
        # (c, steps, b) sample indices and weights; padding points at sample 0 with weight 0.
        index = torch.zeros(c, num_steps, b, dtype=torch.long)
        weight = torch.zeros(c, num_steps, b)
        for i, sched in enumerate(schedules):
            for t, idx in enumerate(sched):
                index[i, t, : len(idx)] = idx
                weight[i, t, : len(idx)] = 1.0
        _, frozen = module_state(self.model, self.names)
        base = split_vector(global_vec, self.model, self.names)
        params = {k: v.unsqueeze(0).expand(c, *v.shape).clone() for k, v in base.items()}
        step_grad = vmap(grad(masked_mean_loss(self.model, self.per_sample_loss, frozen)))
        keys = list(datasets[0])
        for t in range(num_steps):
            batch = {k: torch.stack([d[k][index[i, t]] if _size(d) else _empty_like(datasets, k, b)
                                     for i, d in enumerate(datasets)]) for k in keys}
            g = step_grad(params, batch, weight[:, t])
            params = {k: p - cfg.lr * g[k] for k, p in params.items()}
        return torch.cat([params[n].reshape(c, -1) for n in self.names], dim=1)


def _size(data: Batch) -> int:
    return len(next(iter(data.values())))


def _empty_like(datasets: list[Batch], key: str, b: int) -> torch.Tensor:
    """Zero padding for a client with no samples, shaped like another client's batch."""
    ref = next(d[key] for d in datasets if _size(d))
    return torch.zeros(b, *ref.shape[1:], dtype=ref.dtype)
