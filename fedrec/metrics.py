"""Ranking metrics: HR@K and NDCG@K (leave-one-out, sampled candidates) and ER@K of target items.

- HR@K / NDCG@K (He et al. 2017, §4.1): the held-out item is column 0 of each candidate row; its
  rank is the number of candidates scoring strictly higher. HR = [rank < K], NDCG = 1/log₂(rank + 2).
- ER@K (exposure ratio; Rong et al. ICDE 2022, Yuan et al. SIGIR 2023): the share of users who never
  interacted with a target item whose top-K list over all items they have not trained on contains
  it; averaged over the targets.
"""

from __future__ import annotations

import torch

from labcore.errors import InputError


def check_k(k: int, name: str = "K") -> None:
    if k <= 0:
        raise InputError(f"{name} must be a positive integer, got {k}")


def hit_ndcg(candidate_scores: torch.Tensor, k: int) -> tuple[float, float]:
    """(HR@k, NDCG@k) over users; ``candidate_scores[:, 0]`` is the held-out item."""
    check_k(k)
    rank = (candidate_scores[:, 1:] > candidate_scores[:, :1]).sum(dim=1)
    hit = rank < k
    ndcg = torch.where(hit, 1.0 / torch.log2(rank.float() + 2.0), torch.zeros_like(rank, dtype=torch.float))
    return float(hit.float().mean()), float(ndcg.mean())


def exposure_ratio(scores: torch.Tensor, seen: torch.Tensor, targets: list[int], eligible: torch.Tensor, k: int) -> float:
    """ER@k: ``scores`` (U, I), ``seen`` (U, I) masks items excluded from the lists (train positives),
    ``eligible`` (U, T) marks users who never interacted with target t."""
    check_k(k)
    masked = scores.masked_fill(seen, float("-inf"))
    top = masked.topk(min(k, scores.shape[1]), dim=1).indices
    ratios = []
    for j, t in enumerate(targets):
        users = eligible[:, j]
        if users.any():
            ratios.append(float((top[users] == t).any(dim=1).float().mean()))
    return sum(ratios) / len(ratios) if ratios else 0.0
