"""FedRecAttack (Rong, Wang, He, Zheng, ICDE 2022; code rdz98/FedRecAttack), reconstructed as a baseline.

The attacker knows a ``public_fraction`` share of all train interactions (drawn once with the run's
seed). Each round it

1. approximates the user vector of every user with public interactions by fitting it, as the
   client would, to that user's public items (``fedrec.local.fit_user``);
2. takes, per approximated user, the score of its K-th ranked item (K = ``top_k``) and the gradient
   of Σ_u Σ_t softplus(s_K(u) − s(u, t)) (push each target into the top-K) w.r.t. the item table;
3. uploads the ``kappa`` rows with the largest gradient (targets included), rescaled so the largest
   row has norm ``row_norm`` — each malicious client on its own random half of the approximated users.

Our choices: the softplus surrogate (the paper's loss is a ranking hinge), the half-sample per client,
the row-norm bound in place of the paper's gradient clipping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fedharness.attacks import AttackContext, register
from fedrec._attack import rec_task, row_upload, scale_rows
from labcore.errors import InputError

PUBLIC_SALT = 2_022


def public_profiles(task, fraction: float) -> list[np.ndarray]:
    """Each user's public positives (possibly empty), a ``fraction`` of all train interactions."""
    rng = np.random.default_rng([task.seed, PUBLIC_SALT])
    return [its[rng.random(len(its)) < fraction] for its in task.split.train]


@register("fedrecattack")
@dataclass
class FedRecAttack:
    public_fraction: float = 0.01
    top_k: int = 5
    kappa: int = 60
    row_norm: float = 300.0
    knowledge = "own"

    def __post_init__(self) -> None:
        if not 0 < self.public_fraction <= 1 or self.top_k < 1 or self.kappa < 1 or self.row_norm <= 0:
            raise InputError("fedrecattack needs 0 < public_fraction <= 1, top_k >= 1, kappa >= 1, row_norm > 0")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        task = rec_task(ctx)
        public = [p for p in public_profiles(task, self.public_fraction) if len(p)]
        if not public:
            raise InputError("fedrecattack: no public interactions at this public_fraction; raise it")
        base = [task.fabricated_profile(p, i) for i, p in enumerate(public)]
        users = task.fit_users(ctx.global_vec, base)
        uploads = []
        for seed in ctx.attacker_seeds:
            pick = np.random.default_rng(seed).random(len(users)) < 0.5
            g = self.gradient(task, ctx.global_vec, users[torch.from_numpy(pick)])
            rows = g.norm(dim=1).topk(min(self.kappa, len(g))).indices
            uploads.append(row_upload(task, ctx.global_vec, rows, scale_rows(-g[rows], self.row_norm)))
        return torch.stack(uploads)

    def gradient(self, task, global_vec: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """∂/∂Q of Σ_u Σ_t softplus(s_K(u) − s(u, t)); (I, row)."""
        item, _ = task.parts(global_vec)
        q = item.clone().requires_grad_(True)
        vec = torch.cat([q.reshape(-1), global_vec[q.numel():]])
        scores = task.all_scores(vec, users)
        kth = scores.masked_fill(torch.zeros_like(scores, dtype=torch.bool).index_fill_(1, torch.tensor(task.targets), True),
                                 float("-inf")).topk(self.top_k, dim=1).values[:, -1]
        loss = F.softplus(kth.unsqueeze(1) - scores[:, task.targets]).sum()
        (g,) = torch.autograd.grad(loss, q)
        return g
