"""Synthetic-user poisoning of federated recommenders (Yuan, Nguyen, He, Chen, Yin, SIGIR 2023,
arXiv 2304.03054): a few fabricated clients with no real data, no knowledge of benign users, item
popularity or public interactions raise unpopular target items in benign users' top-K lists.

The paper's abstract fixes the threat model and that "poisoned gradients [are built] considering
target items' alternative products"; its full procedure was not available to us. Reconstruction
(every step below is our choice where the abstract is silent):

1. Each malicious client fabricates ``users_per_client`` synthetic users per round, each the user
   vector a benign client would fit (``fedrec.local.fit_user``) to ``profile_size`` items drawn
   uniformly from the catalogue — so they cover the item space without knowing real tastes.
2. A synthetic user's **alternative products** are its ``num_alternatives`` highest-scoring
   non-target items under the current global model: what it would be shown instead of a target.
3. The poisoned gradient is that of Σ_users Σ_targets Σ_alternatives softplus(s(u, a) − s(u, t))
   (a BPR loss ranking each target above its alternatives) w.r.t. the target item rows only.
4. The upload changes the target rows only, by −gradient rescaled so its largest row has norm
   ``row_norm`` (a bounded step). Default 300, far above the honest rows (``scripts/bench_fedrec.py
   --row-norm-stats``: median ~1–5, max ~6–60 per round at ``local.lr`` 8): once the target ranks
   high, the ~200 benign clients that sample it as a fresh negative each round pull it back with a
   summed row of up to ~2,800 along the push (round 2 on ML-100K), which 9 attackers only offset
   at a few hundred each: after 10 rounds ER@5 is 0 at row norm 10 or 30, 0.58 at 100, 0.81 at 300
   (3 seeds). So a row-norm bound near the honest range (hierarchical clipping, norm clipping)
   removes it. On the trained Fed-NCF the same step holds ER@5 only in rounds 1–2 (0.70, 0.11 at
   300; ≤ 0.07 at 10 or 30) and ≤ 0.04 after; see the README for the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fedharness.attacks import AttackContext, register
from fedrec import models
from fedrec._attack import random_profiles, rec_task, row_upload, scale_rows
from labcore.errors import InputError


def promotion_gradient(task, global_vec: torch.Tensor, users: torch.Tensor, num_alternatives: int) -> torch.Tensor:
    """∂/∂q_t of Σ_u Σ_t Σ_a softplus(s(u, a) − s(u, t)), a = u's top non-target items; (T, row)."""
    item, shared = task.parts(global_vec)
    targets = torch.tensor(task.targets)
    with torch.no_grad():
        scores = task.all_scores(global_vec, users)
        scores[:, targets] = float("-inf")
        alternatives = scores.topk(num_alternatives, dim=1).indices
    q_t = item[targets].clone().requires_grad_(True)
    loss = torch.zeros(())
    for u, alt in zip(users, alternatives):
        s_alt = models.score(task.model, shared, u, item[alt]).detach()
        s_t = models.score(task.model, shared, u, q_t)
        loss = loss + F.softplus(s_alt.unsqueeze(0) - s_t.unsqueeze(1)).sum()
    (g,) = torch.autograd.grad(loss, q_t)
    return g


@register("synthetic_users")
@dataclass
class SyntheticUsers:
    """Yuan et al.'s attack as a client behaviour; parameters are the reconstruction's knobs."""

    users_per_client: int = 8
    profile_size: int = 20
    num_alternatives: int = 20
    row_norm: float = 300.0
    knowledge = "own"

    def __post_init__(self) -> None:
        if min(self.users_per_client, self.profile_size, self.num_alternatives) < 1 or self.row_norm <= 0:
            raise InputError("synthetic_users needs users_per_client, profile_size, num_alternatives >= 1 and row_norm > 0")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        task = rec_task(ctx)
        uploads = []
        for seed in ctx.attacker_seeds:
            rng = np.random.default_rng(seed)
            positives = random_profiles(task, rng, self.users_per_client, self.profile_size)
            profiles = [task.fabricated_profile(p, int(rng.integers(2**31))) for p in positives]
            users = task.fit_users(ctx.global_vec, profiles)
            g = promotion_gradient(task, ctx.global_vec, users, self.num_alternatives)
            uploads.append(row_upload(task, ctx.global_vec, torch.tensor(task.targets), scale_rows(-g, self.row_norm)))
        return torch.stack(uploads)
