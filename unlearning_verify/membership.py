"""Membership inference on the owner's genuine (unmarked) samples: does the data remain?

A backdoor test only shows that the *marked* samples were forgotten; a server that scrubs the
watermark but keeps the genuine data passes it (Zhang et al., ICML 2024). Loss-threshold membership
inference (Yeom et al. 2018) compares the served model's losses on the owner's unmarked samples with
losses on non-members from the same distribution; with a reference model that never saw the owner,
per-sample losses are calibrated as ℓ_served − ℓ_reference (cancelling sample difficulty, as in
reference-model attacks). One-sided Mann–Whitney U test: members have lower scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import mannwhitneyu
from sklearn.metrics import roc_auc_score


@dataclass(frozen=True)
class MembershipResult:
    auc: float
    p_value: float
    flagged: bool
    members: int
    non_members: int
    calibrated: bool

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def membership_test(member_losses: np.ndarray, non_member_losses: np.ndarray, *, alpha: float = 0.01,
                    reference_member_losses: np.ndarray | None = None,
                    reference_non_member_losses: np.ndarray | None = None) -> MembershipResult:
    """Flag membership when the owner's samples score significantly lower than non-members."""
    m, n = np.asarray(member_losses, float), np.asarray(non_member_losses, float)
    calibrated = reference_member_losses is not None and reference_non_member_losses is not None
    if calibrated:
        m = m - np.asarray(reference_member_losses, float)
        n = n - np.asarray(reference_non_member_losses, float)
    scores = np.concatenate([-m, -n])
    truth = np.concatenate([np.ones(len(m)), np.zeros(len(n))])
    auc = float(roc_auc_score(truth, scores))
    pval = float(mannwhitneyu(m, n, alternative="less").pvalue)
    return MembershipResult(auc, pval, pval < alpha, len(m), len(n), calibrated)


def matched_non_members(member_labels: np.ndarray, pool_labels: np.ndarray, per_member: int, seed: int) -> np.ndarray:
    """Indices into the pool with the members' class mix (``per_member`` draws per member, with
    replacement only where a class runs short), so class difficulty does not masquerade as membership."""
    rng = np.random.default_rng(seed)
    out = []
    for c, count in zip(*np.unique(member_labels, return_counts=True)):
        cand = np.flatnonzero(pool_labels == c)
        if len(cand):
            k = count * per_member
            out.append(rng.choice(cand, size=k, replace=k > len(cand)))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
