"""Fed-NCF clients batched over a chunk: one autograd graph for c clients instead of a ``vmap`` per client.

The same client as :func:`fedrec.local.local_update` (fit pᵤ with the global model fixed, then
``epochs`` full-batch steps on pᵤ, the touched item rows and the client's own copy of the shared
layers), written on padded (c, L) tensors. The loss summed over clients has, per client, the gradient
of that client's own loss (clients share no variable: each has its own pᵤ, item-slot rows and, while
training, shared-layer copy), so one backward pass gives every client's gradient. pᵤ stays in the
returned ``users`` (the client's side); the upload is the item-row deltas and the shared deltas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedrec.local import Hyper, Padded, Profile, chunks, pad
from fedrec.models import NCF, ncf_head, ncf_item_side, ncf_scores


def _samples(q_slots: torch.Tensor, b: Padded) -> torch.Tensor:
    """Each sample's item row (c, L, 2D) from the client's slots."""
    c, u, row = q_slots.shape
    return q_slots.reshape(c * u, row)[b.sample_slot + u * torch.arange(c).unsqueeze(1)]


def _bce(s: torch.Tensor, b: Padded) -> torch.Tensor:
    """Σ over clients of each client's weighted BCE sum (padding has weight 0)."""
    return (b.weight * F.binary_cross_entropy_with_logits(s, b.labels, reduction="none")).sum()


def _user_step(hp: Hyper, users: torch.Tensor, g: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """pᵤ ← pᵤ − η_u (∇mean BCE + 2λpᵤ)."""
    return (users - hp.user_lr * (g / n.unsqueeze(1) + 2 * hp.user_reg * users)).detach()


@torch.enable_grad()
def fit(model: NCF, hp: Hyper, shared: dict[str, torch.Tensor], q_slots: torch.Tensor, b: Padded) -> torch.Tensor:
    """Every client's pᵤ (c, 2D): ``user_steps`` gradient steps from 0, global model fixed."""
    n = b.weight.sum(1).clamp_min(1.0)
    users = torch.zeros(len(q_slots), model.user_dim)
    side = ncf_item_side(model, shared, _samples(q_slots.detach(), b))
    side = tuple(t.detach() for t in side)
    for _ in range(hp.user_steps):
        users.requires_grad_(True)
        (g,) = torch.autograd.grad(_bce(ncf_head(model, shared, users, side), b), users)
        users = _user_step(hp, users, g, n)
    return users


@torch.enable_grad()
def update(model: NCF, hp: Hyper, shared: dict[str, torch.Tensor], q_slots: torch.Tensor, b: Padded):
    """(Δ item slots (c, u, 2D), Δ shared layers {name: (c, …)}, pᵤ (c, 2D)) of a chunk of clients."""
    n = b.weight.sum(1).clamp_min(1.0)
    users = fit(model, hp, shared, q_slots, b)
    q = q_slots.detach().clone()
    sh = {k: v.detach().unsqueeze(0).expand(len(q), *v.shape).clone() for k, v in shared.items()}
    for _ in range(hp.epochs):
        leaves = [q, users, *sh.values()]
        for t in leaves:
            t.requires_grad_(True)
        g_q, g_u, *g_sh = torch.autograd.grad(_bce(ncf_scores(model, sh, users, _samples(q, b)), b), leaves)
        users = _user_step(hp, users, g_u, n)
        q = (q - hp.lr * g_q).detach()
        sh = {k: (v - hp.lr * g / n.view(-1, *[1] * (v.dim() - 1))).detach() for (k, v), g in zip(sh.items(), g_sh)}
    return q - q_slots, {k: sh[k] - shared[k] for k in shared}, users


def train_profiles(model: NCF, hp: Hyper, item: torch.Tensor, shared: dict[str, torch.Tensor], profiles: list[Profile],
                   chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse uploads of every profile's client: flat keys c·I + i of the changed rows, their deltas,
    the shared-layer deltas (c, n_shared) in ``shared``'s order, and the clients' own pᵤ (c, 2D)."""
    keys, deltas = [], []
    d_shared = torch.zeros(len(profiles), sum(v.numel() for v in shared.values()))
    users = torch.zeros(len(profiles), model.user_dim)
    for group in chunks([len(p[0]) for p in profiles], chunk):
        b = pad([profiles[i] for i in group])
        dq, dsh, users[group] = update(model, hp, shared, item[b.slots], b)
        mask = b.slot_mask.bool()
        keys.append((torch.tensor(group).unsqueeze(1) * item.shape[0] + b.slots)[mask])
        deltas.append(dq[mask])
        d_shared[group] = torch.cat([v.flatten(1) for v in dsh.values()], dim=1)
    key = torch.cat(keys)
    order = key.argsort()
    return key[order], torch.cat(deltas)[order], d_shared, users


def fit_users(model: NCF, hp: Hyper, item: torch.Tensor, shared: dict[str, torch.Tensor], profiles: list[Profile],
              chunk: int) -> torch.Tensor:
    """Each profile's fitted pᵤ (c, 2D), the model fixed (evaluation, attackers' synthetic users)."""
    out = torch.zeros(len(profiles), model.user_dim)
    for group in chunks([len(p[0]) for p in profiles], chunk):
        b = pad([profiles[i] for i in group])
        out[group] = fit(model, hp, shared, item[b.slots], b)
    return out


def all_scores(model: NCF, shared: dict[str, torch.Tensor], users: torch.Tensor, item: torch.Tensor,
               chunk: int = 64) -> torch.Tensor:
    """Scores (U, I) of every item for each user, ``chunk`` users at a time (differentiable)."""
    parts = [ncf_scores(model, shared, u, item.unsqueeze(0).expand(len(u), *item.shape)) for u in users.split(chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, item.shape[0])

