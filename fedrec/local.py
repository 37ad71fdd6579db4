"""What a recommender client computes on its device, vectorized over many clients with ``torch.func.vmap``.

A client holds a profile: item ids with labels (its positives, 1, and sampled negatives, 0). It

1. fits its private user vector pᵤ with the item table and shared layers fixed: ``user_steps`` steps
   of gradient descent on the mean BCE loss + ``user_reg``·‖pᵤ‖², from pᵤ = 0. Our choice: the
   literature's clients keep pᵤ across rounds (warm start); re-fitting it each round keeps every
   client stateless, so the global vector alone is the simulation's state and resume is exact.
   pᵤ never leaves this function's scope except as an input to the client's own scores.
2. runs ``epochs`` full-batch gradient steps on (pᵤ, its item rows, shared layers); item rows step
   on the summed loss (each appearance counts once, whatever the profile size), pᵤ and the shared
   layers on the mean loss.
3. returns the changes of the item rows it touched and of the shared layers: its upload.

Profiles are padded per chunk of clients (padding has weight 0), sorted by length to keep chunks tight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad, vmap

from fedrec.models import score

Profile = tuple[np.ndarray, np.ndarray]


@dataclass
class Hyper:
    """Local optimisation knobs (from the task config and ``local``)."""

    user_steps: int
    user_lr: float
    user_reg: float
    epochs: int
    lr: float


@dataclass
class Padded:
    """c clients' profiles: distinct items per client (``slots``) and samples pointing at slots."""

    slots: torch.Tensor
    slot_mask: torch.Tensor
    sample_slot: torch.Tensor
    labels: torch.Tensor
    weight: torch.Tensor


def pad(profiles: list[Profile]) -> Padded:
    """Pad profiles (items, labels) to the chunk's longest; item 0 with weight 0 fills the gaps."""
    uniq = [np.unique(items, return_inverse=True) for items, _ in profiles]
    c, u_max, l_max = len(profiles), max(len(u) for u, _ in uniq), max(len(p[0]) for p in profiles)
    slots, slot_mask = torch.zeros(c, u_max, dtype=torch.long), torch.zeros(c, u_max)
    sample_slot, labels, weight = torch.zeros(c, l_max, dtype=torch.long), torch.zeros(c, l_max), torch.zeros(c, l_max)
    for k, ((items, lab), (u, inv)) in enumerate(zip(profiles, uniq)):
        slots[k, : len(u)], slot_mask[k, : len(u)] = torch.from_numpy(u), 1.0
        sample_slot[k, : len(inv)] = torch.from_numpy(inv.reshape(-1))
        labels[k, : len(lab)], weight[k, : len(lab)] = torch.from_numpy(lab.astype(np.float32)), 1.0
    return Padded(slots, slot_mask, sample_slot, labels, weight)


def _loss_sum(model, shared, user, q_slots, sample_slot, labels, weight) -> torch.Tensor:
    s = score(model, shared, user, q_slots[sample_slot])
    return (weight * F.binary_cross_entropy_with_logits(s, labels, reduction="none")).sum()


def fit_user(model: nn.Module, hp: Hyper, shared, q_slots, sample_slot, labels, weight) -> torch.Tensor:
    """pᵤ = argmin mean BCE + λ‖p‖², by ``user_steps`` gradient steps from 0 (one client)."""
    n = weight.sum().clamp_min(1.0)
    user = torch.zeros(model.user_dim, dtype=q_slots.dtype)
    g = grad(_loss_sum, argnums=2)
    for _ in range(hp.user_steps):
        user = user - hp.user_lr * (g(model, shared, user, q_slots, sample_slot, labels, weight) / n + 2 * hp.user_reg * user)
    return user


def local_update(model: nn.Module, hp: Hyper, shared, q_slots, sample_slot, labels, weight):
    """(Δ item slots, Δ shared layers) of one client after fitting its user vector (one client)."""
    n = weight.sum().clamp_min(1.0)
    user = fit_user(model, hp, shared, q_slots, sample_slot, labels, weight)
    q, sh = q_slots, dict(shared)
    g = grad(_loss_sum, argnums=(1, 2, 3))
    for _ in range(hp.epochs):
        g_sh, g_u, g_q = g(model, sh, user, q, sample_slot, labels, weight)
        user = user - hp.user_lr * (g_u / n + 2 * hp.user_reg * user)
        q = q - hp.lr * g_q
        sh = {k: v - hp.lr * g_sh[k] / n for k, v in sh.items()}
    return q - q_slots, {k: sh[k] - shared[k] for k in shared}


def chunks(sizes: list[int], chunk: int) -> list[list[int]]:
    """Positions grouped into chunks of similar size (sorted by size, stable)."""
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    return [order[i : i + chunk] for i in range(0, len(order), chunk)]


def train_profiles(
    model: nn.Module, hp: Hyper, item: torch.Tensor, shared: dict[str, torch.Tensor], profiles: list[Profile], chunk: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Uploads of each profile's client: dense item-table deltas (c, I, row) and shared deltas (c, …)."""
    c = len(profiles)
    d_item = torch.zeros(c, *item.shape)
    d_shared = {k: torch.zeros(c, *v.shape) for k, v in shared.items()}
    step = vmap(lambda q, s, lab, w: local_update(model, hp, shared, q, s, lab, w))
    for group in chunks([len(p[0]) for p in profiles], chunk):
        b = pad([profiles[i] for i in group])
        dq, dsh = step(item[b.slots], b.sample_slot, b.labels, b.weight)
        rows = torch.tensor(group).unsqueeze(1).expand_as(b.slots)
        d_item.index_put_((rows, b.slots), dq * b.slot_mask.unsqueeze(-1), accumulate=True)
        for k, v in dsh.items():
            d_shared[k][group] = v
    return d_item, d_shared


def fit_users(
    model: nn.Module, hp: Hyper, item: torch.Tensor, shared: dict[str, torch.Tensor], profiles: list[Profile], chunk: int,
) -> torch.Tensor:
    """Each profile's fitted user vector (c, user_dim), for evaluation on the client's side."""
    out = torch.zeros(len(profiles), model.user_dim)
    fit = vmap(lambda q, s, lab, w: fit_user(model, hp, shared, q, s, lab, w))
    for group in chunks([len(p[0]) for p in profiles], chunk):
        b = pad([profiles[i] for i in group])
        out[group] = fit(item[b.slots], b.sample_slot, b.labels, b.weight)
    return out


@dataclass
class Pairs:
    """All profiles as distinct (client, item) pairs: flat key c·I + i, multiplicity, label."""

    key: torch.Tensor
    client: torch.Tensor
    item: torch.Tensor
    weight: torch.Tensor
    label: torch.Tensor
    count: torch.Tensor


def pairs_of(profiles: list[Profile], num_items: int) -> Pairs:
    keys = np.concatenate([c * num_items + p[0].astype(np.int64) for c, p in enumerate(profiles)])
    labels = np.concatenate([p[1] for p in profiles]).astype(np.float32)
    uniq, inverse, mult = np.unique(keys, return_inverse=True, return_counts=True)
    label = np.zeros(len(uniq), dtype=np.float32)
    label[inverse] = labels
    key = torch.from_numpy(uniq)
    count = torch.tensor([float(len(p[0])) for p in profiles])
    return Pairs(key, key // num_items, key % num_items, torch.from_numpy(mult.astype(np.float32)), torch.from_numpy(label), count)


def _mf_user_step(hp: Hyper, users: torch.Tensor, item: torch.Tensor, p: Pairs) -> torch.Tensor:
    """One gradient step of every user vector on its mean BCE + λ‖p‖² (MF, closed-form gradient).

    Scores and gradients go through dense (clients × items) matrices: two GEMMs instead of gathers."""
    scores = (users @ item.T).reshape(-1)[p.key]
    resid = torch.zeros(len(users) * len(item))
    resid[p.key] = p.weight * (torch.sigmoid(scores) - p.label)
    g = resid.view(len(users), len(item)) @ item / p.count.clamp_min(1).unsqueeze(1)
    return users - hp.user_lr * (g + 2 * hp.user_reg * users)


def mf_fit_users(hp: Hyper, item: torch.Tensor, profiles: list[Profile]) -> torch.Tensor:
    """:func:`fit_user` for MF, all clients at once (same objective, no padding)."""
    p = pairs_of(profiles, item.shape[0])
    users = torch.zeros(len(profiles), item.shape[1])
    for _ in range(hp.user_steps):
        users = _mf_user_step(hp, users, item, p)
    return users


def mf_train_profiles(hp: Hyper, item: torch.Tensor, profiles: list[Profile]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`local_update` for MF: the changed rows as flat keys c·I + i and their deltas (sparse
    upload), and the fitted user vectors."""
    num_items, dim = item.shape
    p = pairs_of(profiles, num_items)
    users = torch.zeros(len(profiles), dim)
    for _ in range(hp.user_steps):
        users = _mf_user_step(hp, users, item, p)
    q0 = item[p.item]
    q = q0.clone()
    for _ in range(hp.epochs):
        u = users[p.client]
        resid = p.weight * (torch.sigmoid((u * q).sum(1)) - p.label)
        users = users - hp.user_lr * (torch.zeros_like(users).index_add_(0, p.client, resid.unsqueeze(1) * q)
                                      / p.count.clamp_min(1).unsqueeze(1) + 2 * hp.user_reg * users)
        q = q - hp.lr * resid.unsqueeze(1) * u
    return p.key, q - q0, users

