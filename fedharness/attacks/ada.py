"""ADA, attacking-distance-aware attack (Sun, Ochiai, Sakuma, "Semi-Targeted Model Poisoning Attack
on FL via Backward Error Analysis", IJCNN 2022).

1. Backward error analysis on the global model θ with the attacker's samples of the source class s:
   AD(s, t) = mean_x mean_ℓ ‖∇_{θ_ℓ} BCE(softmax f_θ(x), onehot(t))‖₂ — per-sample gradient norms
   (``torch.func.vmap(grad(·))``) averaged over parameter tensors ℓ, then over samples.
   The target is t* = argmin_{t≠s} AD(s, t), the class reachable with the smallest change.
2. Poisoned training: the source samples relabelled t* plus as many clean samples of other classes,
   ``epochs`` of Adam (lr 1e-3, batch 16), from θ.
3. Stealth scaling: Δ ← λΔ with λ = 1, 0.9, …, 0.1, the first with ‖λΔ‖ ≤ the median norm of the
   round's benign updates (λ = median/‖Δ‖ if even 0.1 is too large). Needs "benign" knowledge.
``ctx.info`` receives the distances, the chosen target and λ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from fedharness.attacks import AttackContext, register
from fedharness.attacks._training import benign_updates
from fedharness.config import MAX_LOCAL_EPOCHS, positive
from fedharness.engines.inprocess import InProcessEngine
from labcore.errors import InputError
from fedharness.local_training import module_state
from fedharness.params import split_vector


def attacking_distances(engine: InProcessEngine, global_vec: torch.Tensor, x_source: torch.Tensor,
                        num_classes: int, source: int) -> dict[int, float]:
    """AD(s, t) for every t ≠ s from per-sample gradient norms at the global model ``global_vec``."""
    _, frozen = module_state(engine.model, engine.names)
    params = {k: v.detach() for k, v in split_vector(global_vec, engine.model, engine.names).items()}

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = functional_call(engine.model, {**frozen, **p}, (x.unsqueeze(0),)).softmax(dim=1)[0]
        return F.binary_cross_entropy(probs, target)

    per_sample = vmap(grad(loss), in_dims=(None, 0, None))
    distances = {}
    for t in range(num_classes):
        if t == source:
            continue
        target = F.one_hot(torch.tensor(t), num_classes).float()
        grads = per_sample(params, x_source, target)
        layer_norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads.values()])  # (layers, samples)
        distances[t] = float(layer_norms.mean(dim=0).mean())
    return distances


def stealth_scale(delta_norm: float, median_norm: float) -> float:
    """λ ∈ {1, 0.9, …, 0.1} with λ‖Δ‖ ≤ median; median/‖Δ‖ when even 0.1 is too large."""
    for step in range(10, 0, -1):
        if step / 10 * delta_norm <= median_norm:
            return step / 10
    return median_norm / delta_norm


@register("ada")
@dataclass
class ADA:
    """Misclassify ``source``; at most ``max_samples`` source samples; Adam ``epochs``/``lr``/``batch_size``.

    ``target`` fixes the target instead of the AD argmin (the paper's fixed-target baseline);
    ``stealth`` False submits the unscaled update (λ = 1)."""

    source: int = 2
    target: int | None = None
    stealth: bool = True
    max_samples: int = 500
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 16
    knowledge: str = "benign"

    def __post_init__(self) -> None:
        if self.target is not None and self.target == self.source:
            raise InputError(f"ada: the fixed target {self.target} must differ from the source class")
        classes_ok = self.source >= 0 and (self.target is None or self.target >= 0)
        training_ok = 1 <= self.epochs <= MAX_LOCAL_EPOCHS and self.batch_size >= 1 and positive(self.lr)
        if not (classes_ok and training_ok and self.max_samples >= 1):
            raise InputError(f"ada needs source and target >= 0, max_samples >= 1, epochs in 1..{MAX_LOCAL_EPOCHS}, "
                             f"batch_size >= 1 and a finite lr > 0, got source={self.source}, target={self.target}, "
                             f"max_samples={self.max_samples}, epochs={self.epochs}, batch_size={self.batch_size}, "
                             f"lr={self.lr}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        median_norm = float(benign_updates(ctx).norm(dim=1).median())
        classes = int(getattr(ctx.task, "num_classes", 0)) or 10
        rows = []
        for data, seed in zip(ctx.attacker_data, ctx.attacker_seeds):
            is_source = data["y"] == self.source
            if not bool(is_source.any()):
                raise InputError(f"ada: the attacker holds no samples of source class {self.source}")
            x_src = data["x"][is_source][: self.max_samples]
            distances = attacking_distances(ctx.engine, ctx.global_vec, x_src, classes, self.source)
            target = min(distances, key=distances.get) if self.target is None else self.target
            g = torch.Generator().manual_seed(seed)
            others = torch.nonzero(~is_source).flatten()
            others = others[torch.randperm(len(others), generator=g)[: len(x_src)]]
            x = torch.cat([x_src, data["x"][others]])
            y = torch.cat([torch.full((len(x_src),), target, dtype=data["y"].dtype), data["y"][others]])
            delta = self.train(ctx, x, y, g) - ctx.global_vec
            scale = stealth_scale(float(delta.norm()), median_norm) if self.stealth else 1.0
            rows.append(ctx.global_vec + scale * delta)
            ctx.info.update({"ada_target": target, "ada_scale": scale,
                             "attacking_distances": {str(k): v for k, v in distances.items()}})
        return torch.stack(rows)

    def train(self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Adam on the flat parameter vector from the global model."""
        engine = ctx.engine
        _, frozen = module_state(engine.model, engine.names)
        vec = ctx.global_vec.clone().requires_grad_(True)
        opt = torch.optim.Adam([vec], lr=self.lr)
        for _ in range(self.epochs):
            for idx in torch.randperm(len(x), generator=g).split(self.batch_size):
                params = split_vector(vec, engine.model, engine.names)
                loss = engine.per_sample_loss(engine.model, {**frozen, **params}, {"x": x[idx], "y": y[idx]}).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        return vec.detach()
