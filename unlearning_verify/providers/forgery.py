"""D7 (dishonest): retraining-based forgery of Zhang et al. (ICML 2024), Adv-Sr.

The provider retrains from scratch without the owner's rows, but in every mini-batch each deleted
sample is replaced by the retained sample, among ``candidates`` random ones (M = 50 in the paper),
whose gradient is closest to the deleted sample's (here one pool of M candidates per mini-batch,
shared by its deleted samples, so the search costs one extra forward pass of M images); the trajectory mimics training on the
owner's data, yet the log is a valid proof of retraining. Gradients are those of the last layer,
(softmax − one-hot) ⊗ penultimate features, which is what the batch gradient is most sensitive to
and keeps the search cheap.

For a served model this is a retrain on the remaining data with some samples duplicated: the owner's
samples themselves never enter training, so neither the backdoor nor the membership of the owner's
samples can be seen in the served model's answers (the bench measures it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unlearning_verify.providers import TRAIN_FIELDS, ProviderState, register, require
from unlearning_verify.training import build_model, lr_factor


def last_layer_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample gradient of the cross-entropy w.r.t. the head weights, flattened."""
    with torch.no_grad():
        feats = model.features(model.body(x))
        err = model.head(feats).softmax(1) - F.one_hot(y, model.head.out_features).float()
    return (err.unsqueeze(2) * feats.unsqueeze(1)).flatten(1)


@register("forgery")
@dataclass
class Forgery:
    candidates: int = 50
    name: str = "forgery"
    honest: bool = False
    reads_train = TRAIN_FIELDS

    def __post_init__(self) -> None:
        require(self.name, "candidates", self.candidates, self.candidates >= 1, "an integer ≥ 1")

    def check_retained(self, count: int) -> None:
        """Refuse more gradient candidates per batch than the ``count`` retained samples."""
        require(self.name, "candidates", self.candidates, self.candidates <= count, f"at most the {count} retained samples")

    def substitute(self, model: nn.Module, state: ProviderState, rows: np.ndarray, rng: np.random.Generator,
                   retained: np.ndarray) -> np.ndarray:
        """Each deleted row in ``rows`` replaced by its closest-gradient retained candidate (the batch's
        deleted rows draw from one shared pool of ``candidates`` random retained rows: one gradient pass)."""
        rows = rows.copy()
        deleted = np.flatnonzero(state.forget[rows])
        if len(deleted) == 0:
            return rows
        cand = rng.choice(retained, size=self.candidates, replace=False)
        target = last_layer_gradients(model, state.x[rows[deleted]], state.y[rows[deleted]])
        grads = last_layer_gradients(model, state.x[cand], state.y[cand])
        rows[deleted] = cand[torch.cdist(target, grads).argmin(1).numpy()]
        return rows

    def unlearn(self, state: ProviderState) -> nn.Module:
        cfg = state.train_config
        model = build_model(state.x, state.num_classes, state.seed + 1)
        g = torch.Generator().manual_seed(state.seed + 1)
        rng = np.random.default_rng(state.seed + 9)
        retained = np.flatnonzero(~state.forget)
        self.check_retained(len(retained))
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        total = cfg.epochs * math.ceil(len(state.x) / cfg.batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(cfg.schedule, step, total))
        for _ in range(cfg.epochs):
            for idx in torch.randperm(len(state.x), generator=g).split(cfg.batch_size):
                rows = torch.as_tensor(self.substitute(model, state, idx.numpy(), rng, retained))
                model.train()
                loss = F.cross_entropy(model(state.x[rows]), state.y[rows])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        return model.eval()
