"""Decision statistics for unlearning verification (Athena, Sommer et al. 2022; reference §1.3).

X = number of the n triggered queries classified as the owner's target. H0 (deleted): X ~ Bin(n, q);
H1 (kept): X ~ Bin(n, p). The exact one-sided test rejects H0 ("NOT honoured") iff X ≥ k* with
k* = min{k : P[Bin(n, q) ≥ k] ≤ α}; its power is P[Bin(n, p) ≥ k*]. Wald's SPRT is the sequential
option. p and q are calibrated with one-sided Clopper–Pearson bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy import stats

from labcore.errors import InputError


def check_probability(name: str, value: float) -> None:
    """α, β and calibrated rates must lie strictly inside (0, 1)."""
    if not 0.0 < value < 1.0:
        raise InputError(f"{name} must lie strictly between 0 and 1, got {value}; pass e.g. {name}=0.001")


def clopper_pearson_lower(hits: int, trials: int, confidence: float) -> float:
    """One-sided lower bound: Beta(confidence-complement; hits, trials − hits + 1) quantile."""
    if hits == 0:
        return 0.0
    return float(stats.beta.ppf(1.0 - confidence, hits, trials - hits + 1))


def clopper_pearson_upper(hits: int, trials: int, confidence: float) -> float:
    """One-sided upper bound: Beta(confidence; hits + 1, trials − hits) quantile."""
    if hits == trials:
        return 1.0
    return float(stats.beta.ppf(confidence, hits + 1, trials - hits))


def critical_value(n: int, q: float, alpha: float) -> int:
    """k* = min{k : P[Bin(n, q) ≥ k] ≤ α}; n + 1 when no k ≤ n reaches level α."""
    k = np.arange(n + 2)
    tail = stats.binom.sf(k - 1, n, q)  # P[X ≥ k]
    ok = np.flatnonzero(tail <= alpha)
    return int(k[ok[0]]) if len(ok) else n + 1


def power(n: int, k_star: int, p: float) -> float:
    """P[Bin(n, p) ≥ k*]: the chance of catching a provider that kept the data."""
    return float(stats.binom.sf(k_star - 1, n, p))


def p_value(hits: int, n: int, q: float) -> float:
    """P[Bin(n, q) ≥ hits] under H0 (deleted)."""
    return float(stats.binom.sf(hits - 1, n, q))


@dataclass(frozen=True)
class TestPlan:
    """A fixed-n binomial test: reject H0 iff hits ≥ k_star; ``size`` = actual type-I error."""

    n: int
    k_star: int
    size: float
    power: float

    @property
    def beta(self) -> float:
        return 1.0 - self.power


def plan(n: int, p: float, q: float, alpha: float) -> TestPlan:
    """The exact test at n queries for (p, q, α)."""
    k = critical_value(n, q, alpha)
    return TestPlan(n, k, p_value(k, n, q) if k <= n else 0.0, power(n, k, p))


def required_queries(p: float, q: float, alpha: float, beta: float, max_queries: int = 1000) -> int | None:
    """Smallest n whose exact test has size ≤ α and power ≥ 1 − β; None if above ``max_queries``."""
    for n in range(1, max_queries + 1):
        if plan(n, p, q, alpha).power >= 1.0 - beta:
            return n
    return None


def bernoulli_kl(a: float, b: float) -> float:
    """KL(Bern(a) ‖ Bern(b))."""
    return float(stats.entropy([a, 1 - a], [b, 1 - b]))


def chernoff_queries(p: float, q: float, delta: float) -> int:
    """Chernoff sizing n ≥ ln(1/δ)/KL(t*‖q), t* balancing KL(t‖q) = KL(t‖p) (conservative)."""
    lo, hi = q, p
    for _ in range(100):
        t = (lo + hi) / 2
        lo, hi = (t, hi) if bernoulli_kl(t, q) < bernoulli_kl(t, p) else (lo, t)
    return math.ceil(math.log(1 / delta) / bernoulli_kl((lo + hi) / 2, q))


@dataclass(frozen=True)
class SPRTBounds:
    """Wald's SPRT on the log-likelihood ratio: ≥ upper → kept (NOT honoured), ≤ lower → deleted."""

    upper: float
    lower: float
    hit_step: float
    miss_step: float


def sprt_bounds(p: float, q: float, alpha: float, beta: float) -> SPRTBounds:
    """A = log((1−β)/α), B = log(β/(1−α)); a hit adds log(p/q), a miss log((1−p)/(1−q))."""
    return SPRTBounds(
        upper=math.log((1 - beta) / alpha),
        lower=math.log(beta / (1 - alpha)),
        hit_step=math.log(p / q),
        miss_step=math.log((1 - p) / (1 - q)),
    )


def sprt(outcomes: Iterable[bool], bounds: SPRTBounds) -> tuple[str, int, float]:
    """Run the SPRT over query outcomes (consumed lazily); returns (decision 'kept'/'deleted'/'undecided',
    queries used, LLR)."""
    llr, i = 0.0, 0
    for i, hit in enumerate(outcomes, 1):
        llr += bounds.hit_step if hit else bounds.miss_step
        if llr >= bounds.upper:
            return "kept", i, llr
        if llr <= bounds.lower:
            return "deleted", i, llr
    return "undecided", i, llr
