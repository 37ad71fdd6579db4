"""Decide whether a deletion request was honoured from label-only queries (Athena's exact test).

1. Calibrate: p = backdoor success of the model before deletion on held-out triggered images, q =
   success on a model that never saw the data (a reference model; without one, held-out owners' keys
   with the conservative floor q ≤ max(q_high, 1/K) of the reference brief). Test with the one-sided Clopper–Pearson bounds p_low and q_high.
2. Plan: the exact test at the whole query budget n must reach size ≤ α and power ≥ 1 − β at
   (p_low, q_high); otherwise INCONCLUSIVE (the watermark was not learned well enough), never
   HONORED. The full budget, not the smallest sufficient n, is spent: a provider that kept part of
   the data shows a backdoor rate below p, and more queries keep the test powerful against it.
3. Query n fresh triggered images; NOT HONORED iff hits ≥ k*. The sequential option runs Wald's SPRT
   and stops early.
Several owners combine by majority vote (Athena) and Fisher's method on the p-values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from scipy.stats import combine_pvalues

from labcore.errors import InputError
from unlearning_verify import statistics as st

HONORED, NOT_HONORED, INCONCLUSIVE = "HONORED", "NOT HONORED", "INCONCLUSIVE"
Oracle = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Calibration:
    """Calibrated backdoor success rates: p (data kept) and q (data never seen), with bounds."""

    p_hits: int
    p_trials: int
    q_hits: int
    q_trials: int
    p_low: float
    q_high: float
    q_source: str

    @property
    def p_hat(self) -> float:
        return self.p_hits / self.p_trials

    @property
    def q_hat(self) -> float | None:
        return self.q_hits / self.q_trials if self.q_trials else None


def check_settings(alpha: float, beta: float, queries: int) -> None:
    st.check_probability("alpha", alpha)
    st.check_probability("beta", beta)
    if queries < 1:
        raise InputError(f"the number of queries must be ≥ 1, got {queries}; e.g. --queries 30")


def calibrate(p_hits: int, p_trials: int, q_hits: int | None, q_trials: int | None, num_classes: int,
              alpha: float, beta: float, q_source: str = "reference", q_floor: float = 0.0) -> Calibration:
    """p_low at confidence 1 − β, q_high at confidence 1 − α (at least ``q_floor``); no q counts → 1/K."""
    if p_trials < 1:
        raise InputError("calibrating p needs at least one triggered image; pass more held-out images")
    p_low = st.clopper_pearson_lower(p_hits, p_trials, 1 - beta)
    if q_trials:
        q_high = max(q_floor, st.clopper_pearson_upper(int(q_hits or 0), q_trials, 1 - alpha))
    else:
        q_high, q_hits, q_trials, q_source = 1.0 / num_classes, 0, 0, "prior 1/K"
    return Calibration(p_hits, p_trials, int(q_hits), int(q_trials), p_low, q_high, q_source)


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str
    queries: int
    hits: int
    k_star: int | None
    p_value: float | None
    power: float | None
    size: float | None
    p_low: float
    q_high: float
    sequential: bool

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def verify(oracle: Oracle, queries: torch.Tensor, target: int, calibration: Calibration, *, alpha: float,
           beta: float, max_queries: int, sequential: bool = False) -> Verdict:
    """Query ``oracle`` with triggered images ``queries`` (fresh, true class ≠ target) and decide."""
    check_settings(alpha, beta, max_queries)
    p, q = calibration.p_low, calibration.q_high
    budget = min(max_queries, len(queries))

    def inconclusive(reason: str) -> Verdict:
        return Verdict(INCONCLUSIVE, reason, 0, 0, None, None, None, None, p, q, sequential)

    if p <= q:
        return inconclusive(f"watermark not learned: p_low={p:.3f} ≤ q_high={q:.3f}")
    if sequential:
        bounds = st.sprt_bounds(p, q, alpha, beta)
        outcomes: list[bool] = []

        def ask() -> Iterator[bool]:  # one query at a time: the SPRT stops asking once it decides
            for i in range(budget):
                outcomes.append(bool(oracle(queries[i:i + 1])[0] == target))
                yield outcomes[-1]

        decision, used, llr = st.sprt(ask(), bounds)
        hits = int(sum(outcomes[:used]))
        if decision == "undecided":
            return Verdict(INCONCLUSIVE, f"SPRT undecided after {used} queries (LLR {llr:.2f})", used, hits,
                           None, st.p_value(hits, used, q), None, None, p, q, True)
        verdict = NOT_HONORED if decision == "kept" else HONORED
        return Verdict(verdict, f"SPRT crossed the {decision} boundary (LLR {llr:.2f})", used, hits, None,
                       st.p_value(hits, used, q), None, None, p, q, True)
    needed = st.required_queries(p, q, alpha, beta, max_queries=budget)
    if needed is None:
        more = st.required_queries(p, q, alpha, beta)
        return inconclusive(
            f"p_low={p:.3f}, q_high={q:.3f} need {more or '>1000'} queries for α={alpha:g}, β={beta:g}; "
            f"budget is {budget}")
    test = st.plan(budget, p, q, alpha)
    hits = int((oracle(queries[:budget]) == target).sum())
    pval = st.p_value(hits, budget, q)
    verdict = NOT_HONORED if hits >= test.k_star else HONORED
    sign = "≥" if verdict == NOT_HONORED else "<"
    return Verdict(verdict, f"{hits}/{budget} hits {sign} k*={test.k_star} (power reached from n={needed})", budget,
                   hits, test.k_star, pval, test.power, test.size, p, q, False)


def combine(verdicts: list[Verdict], alpha: float) -> dict:
    """Several owners: Athena's majority vote (ties do not reject) and Fisher's combined p-value."""
    conclusive = [v for v in verdicts if v.verdict != INCONCLUSIVE]
    if not conclusive:
        return {"verdict": INCONCLUSIVE, "owners": len(verdicts), "conclusive": 0, "fisher_p_value": None}
    rejects = sum(v.verdict == NOT_HONORED for v in conclusive)
    fisher = float(combine_pvalues([v.p_value for v in conclusive], method="fisher").pvalue)
    return {
        "verdict": NOT_HONORED if rejects * 2 > len(conclusive) else HONORED,
        "owners": len(verdicts), "conclusive": len(conclusive), "rejects": rejects,
        "fisher_p_value": fisher, "fisher_verdict": NOT_HONORED if fisher <= alpha else HONORED,
    }


def query_pool(x: torch.Tensor, y: torch.Tensor, target: int, source: int | None, seed: int) -> torch.Tensor:
    """Indices of eligible query images (true class ≠ target, or = source for clean-label marks), shuffled."""
    labels = y.numpy()
    ok = np.flatnonzero(labels == source) if source is not None else np.flatnonzero(labels != target)
    return torch.as_tensor(np.random.default_rng(seed).permutation(ok))


def hits(oracle: Oracle, triggered: torch.Tensor, target: int) -> int:
    """Number of triggered images labelled with the target."""
    return int((oracle(triggered) == target).sum()) if len(triggered) else 0


def held_out_owner_hits(oracle: Oracle, family: str, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                        owners: int = 5, seed: int = 0) -> tuple[int, int]:
    """Athena's q without a reference model: triggers of keys that never took part in training, each
    with its own target, queried against the same model. Returns (hits, trials) summed over owners."""
    from unlearning_verify.keys import OwnerKey
    from unlearning_verify.watermarks import build

    total_hits = total = 0
    for i in range(owners):
        key = OwnerKey.generate(-1 - i, family, num_classes, seed=10_000 + seed)
        wm = build(key, tuple(x.shape[1:]))
        pool = query_pool(x, y, wm.target, None, seed + i)
        total_hits += hits(oracle, wm.trigger(x[pool]), wm.target)
        total += len(pool)
    return total_hits, total
