"""Did the provider delete my data? The one entry point: :func:`verify_deletion`.

The owner marked part of its data with one or several key-derived markers (Guo et al., TIFS 2024;
``watermarks.multi``) and holds fresh images of the same distribution (a test split). The protocol:

1. Query pool: per marker, fresh images whose true class differs from the marker's target, split
   into a calibration half and a verification half (fresh, never reused: the binomial model needs
   independent queries).
2. Calibrate (reference §1.3): p = backdoor success of the model before deletion, q = success of a
   reference model that never saw the data, or of held-out owners' keys with the floor 1/K; one-sided
   Clopper–Pearson bounds p_low (confidence 1 − β) and q_high (1 − α).
3. Verify: each marker's exact binomial test (Athena, Sommer et al. 2022) at level (α_b/2)/k on its share
   of the query budget (Bonferroni over the k markers; with ``reallocate``, over the m markers the model
   before deletion learned, at (α_b/2)/m, which then share the whole budget). The other half of α_b is
   the calibration's: each q_high holds at confidence 1 − (α_b/2)/k, since a test against a q_high
   below the reference's true rate would reject more often than its level; the membership check on the owner's own
   samples in their original, unmarked form (loss-based, reference-calibrated; ``membership``) at
   level α_m, α_b + α_m = α (half each by default: the membership check is what catches a provider
   that removed the backdoor but kept the data).
   By the union bound (over the k bounds q_high and the tests made) an honest provider is accused
   with probability ≤ α whatever the markers' dependence. NOT HONORED when any test rejects; HONORED only when at least one marker test was
   conclusive (power ≥ 1 − β at its p_low), so a provider that kept the data and still answers
   that marker like the model before deletion is missed with probability ≤ β; else INCONCLUSIVE.

The verdict names the signal that decided and the assumptions it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from unlearning_verify import statistics as st
from unlearning_verify.membership import matched_non_members, membership_test
from unlearning_verify.oracles import Endpoint
from unlearning_verify.verify import (
    HONORED, INCONCLUSIVE, NOT_HONORED, Calibration, Verdict, calibrate, check_settings, held_out_owner_hits, hits,
    query_pool, verify)

BACKDOOR_ASSUMPTION = ("a provider that kept the data answers the triggered queries like the model before deletion "
                       "(backdoor success ≥ p_low); q_high bounds the success on a model that never saw the data")
MEMBERSHIP_ASSUMPTION = ("the owner's samples (original, unmarked form) and the matched non-members are drawn from "
                         "one distribution; losses come from the served probabilities")


@dataclass
class VerifyConfig:
    """Error rates, query budget and the membership check of one verification."""

    alpha: float = 1e-3
    beta: float = 1e-3
    max_queries: int = 60
    sequential: bool = False
    membership_share: float = 0.5
    membership_samples: int = 200
    held_out_owners: int = 5
    seed: int = 0
    reallocate: bool = False  # markers not learned at calibration (p_low ≤ q_high) give their queries to the others


@dataclass
class QueryData:
    """Fresh images the owner holds (never in training) with their true labels."""

    x: torch.Tensor
    y: torch.Tensor


@dataclass
class MarkerResult:
    family: str
    target: int
    calibration: Calibration
    verdict: Verdict

    def as_dict(self) -> dict:
        cal = self.calibration
        return {"family": self.family, "target": self.target, **self.verdict.as_dict(), "p_hat": cal.p_hat,
                "q_hat": cal.q_hat, "q_source": cal.q_source}


@dataclass
class DeletionVerdict:
    """HONORED / NOT HONORED / INCONCLUSIVE, which signal decided, and on which assumptions."""

    verdict: str
    decided_by: str
    reason: str
    queries: int
    markers: list[MarkerResult]
    alpha_backdoor: float
    alpha_membership: float
    membership: dict | None = None
    membership_queries: int = 0
    assumptions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "decided_by": self.decided_by, "reason": self.reason,
                "queries": self.queries, "membership_queries": self.membership_queries,
                "alpha_backdoor": self.alpha_backdoor, "alpha_membership": self.alpha_membership,
                "markers": [m.as_dict() for m in self.markers], "membership": self.membership,
                "assumptions": self.assumptions}


def markers_of(watermark: object) -> list:
    """The single markers of a watermark (a ``multi`` watermark holds several)."""
    return list(getattr(watermark, "markers", [watermark]))


def calibrate_marker(marker: object, before: Endpoint, reference: Endpoint | None, data: QueryData,
                     cal: torch.Tensor, cfg: VerifyConfig, alpha: float) -> Calibration:
    """p from ``before``; q from ``reference`` or from held-out owners' keys (floor 1/K)."""
    num_classes = int(data.y.max()) + 1
    triggered = marker.trigger(data.x[cal])
    p_hits = hits(before.labels, triggered, marker.target)
    if reference is not None:
        q_hits, q_trials = hits(reference.labels, triggered, marker.target), len(cal)
        return calibrate(p_hits, len(cal), q_hits, q_trials, num_classes, alpha, cfg.beta, "reference model")
    q_hits, q_trials = held_out_owner_hits(before.labels, marker.family, data.x[cal], data.y[cal], num_classes,
                                           owners=cfg.held_out_owners, seed=cfg.seed)
    return calibrate(p_hits, len(cal), q_hits, q_trials, num_classes, alpha, cfg.beta,
                     "held-out owners (floor 1/K)", q_floor=1.0 / num_classes)


@dataclass(frozen=True)
class CalibratedMarker:
    """One marker calibrated on the first half of its query pool; ``ver`` indexes the fresh other half."""

    marker: object
    ver: torch.Tensor
    calibration: Calibration
    alpha: float


def calibrate_markers(before: Endpoint, reference: Endpoint | None, watermark: object, data: QueryData,
                      cfg: VerifyConfig, alpha: float) -> list[CalibratedMarker]:
    """Step 1–2 for every marker at level ``alpha`` (= α_b): independent of the served model, so one
    calibration serves the verification of several served models (the benchmark's behaviours)."""
    out = []
    for index, marker in enumerate(markers_of(watermark)):
        source = getattr(marker, "source", None) if marker.clean_label else None
        pool = query_pool(data.x, data.y, marker.target, source, cfg.seed + 1000 * index)
        cal, ver = pool[: len(pool) // 2], pool[len(pool) // 2:]
        out.append(CalibratedMarker(marker, ver, calibrate_marker(marker, before, reference, data, cal, cfg, alpha),
                                    alpha))
    return out


def run_marker(c: CalibratedMarker, served: Endpoint, data: QueryData, cfg: VerifyConfig, budget: int,
               alpha: float) -> MarkerResult:
    """Test the served model on the fresh half of the marker's query pool at level ``alpha`` (Bonferroni)."""
    m = c.marker
    verdict = verify(served.labels, m.trigger(data.x[c.ver[:budget]]), m.target, c.calibration,
                     alpha=alpha, beta=cfg.beta, max_queries=budget, sequential=cfg.sequential)
    return MarkerResult(m.family, int(m.target), c.calibration, verdict)


def membership_check(served: Endpoint, reference: Endpoint | None, owner: QueryData, data: QueryData,
                     cfg: VerifyConfig, alpha: float) -> tuple[dict, int]:
    """Loss-based membership test on the owner's unmarked samples; returns (result, queries spent)."""
    rng = np.random.default_rng(cfg.seed + 17)
    take = torch.as_tensor(np.sort(rng.permutation(len(owner.y))[: cfg.membership_samples]))
    mx, my = owner.x[take], owner.y[take]
    non = torch.as_tensor(matched_non_members(my.numpy(), data.y.numpy(), 2, cfg.seed + 11))
    before = served.used
    member, non_member = served.losses(mx, my).numpy(), served.losses(data.x[non], data.y[non]).numpy()
    spent = served.used - before
    ref = reference if reference is not None and reference.has_probabilities else None
    result = membership_test(
        member, non_member, alpha=alpha,
        reference_member_losses=None if ref is None else ref.losses(mx, my).numpy(),
        reference_non_member_losses=None if ref is None else ref.losses(data.x[non], data.y[non]).numpy())
    return result.as_dict(), spent


def tested_markers(calibrated: list[CalibratedMarker], cfg: VerifyConfig, alpha_t: float) -> list[CalibratedMarker]:
    """The markers that share the query budget and the tests' level α_t: all k; with ``reallocate``, the
    largest m for which m markers reach power 1 − β on max_queries/m queries at α_t/m (the first m of
    them). The choice uses the calibration alone, never the served model's answers, so the union bound
    over the tested markers holds (q_high stays at the stricter calibration level, over all k)."""
    if not cfg.reallocate:
        return calibrated
    for m in range(len(calibrated), 0, -1):
        budget = max(1, cfg.max_queries // m)
        feasible = [c for c in calibrated if c.calibration.p_low > c.calibration.q_high and st.required_queries(
            c.calibration.p_low, c.calibration.q_high, alpha_t / m, cfg.beta, max_queries=budget) is not None]
        if len(feasible) >= m:
            return feasible[:m]
    return calibrated


def skipped(c: CalibratedMarker) -> MarkerResult:
    """A marker left out by ``reallocate``: no query, INCONCLUSIVE."""
    cal = c.calibration
    reason = f"not tested: p_low={cal.p_low:.3f}, q_high={cal.q_high:.3f}; its queries went to the learned markers"
    return MarkerResult(c.marker.family, int(c.marker.target), cal,
                        Verdict(INCONCLUSIVE, reason, 0, 0, None, None, None, None, cal.p_low, cal.q_high, False))


def calibration_alpha(alpha_b: float, k: int) -> float:
    """Each of the k markers' q_high misses the reference's rate with probability ≤ (α_b/2)/k: half of α_b."""
    return alpha_b / 2 / k


def tests_alpha(alpha_b: float) -> float:
    """What the marker tests share (Bonferroni): the half of α_b that the calibration does not take."""
    return alpha_b / 2


def backdoor_alpha(cfg: VerifyConfig, with_membership: bool) -> float:
    """α_b: all of α without the membership check, else α − α·membership_share."""
    return cfg.alpha - cfg.alpha * cfg.membership_share if with_membership else cfg.alpha


def verify_deletion(before: Endpoint, served: Endpoint, watermark: object, cfg: VerifyConfig, *, data: QueryData,
                    reference: Endpoint | None = None, owner: QueryData | None = None,
                    calibrated: list[CalibratedMarker] | None = None) -> DeletionVerdict:
    """Decide whether the deletion was honoured (module docstring: steps 1–3). ``calibrated``: the
    markers' calibration from an earlier call with the same before/reference/data/cfg (reused when its
    level matches)."""
    check_settings(cfg.alpha, cfg.beta, cfg.max_queries)
    markers = markers_of(watermark)
    with_membership = owner is not None and len(owner.y) > 0 and served.has_probabilities
    alpha_b = backdoor_alpha(cfg, with_membership)
    alpha_m = cfg.alpha - alpha_b
    cal_alpha = calibration_alpha(alpha_b, len(markers))
    if calibrated is None or len(calibrated) != len(markers) or calibrated[0].alpha != cal_alpha:
        calibrated = calibrate_markers(before, reference, watermark, data, cfg, cal_alpha)
    alpha_t = tests_alpha(alpha_b)
    tested = tested_markers(calibrated, cfg, alpha_t)
    budget = max(1, cfg.max_queries // len(tested))
    start = served.used
    chosen = {id(c) for c in tested}
    results = [run_marker(c, served, data, cfg, budget, alpha_t / len(tested)) if id(c) in chosen else skipped(c)
               for c in calibrated]
    queries = served.used - start
    membership, m_queries = (membership_check(served, reference, owner, data, cfg, alpha_m) if with_membership
                             else (None, 0))
    assumptions = [BACKDOOR_ASSUMPTION] + ([MEMBERSHIP_ASSUMPTION] if with_membership else [])
    verdict, decided_by, reason = decide(results, membership)
    return DeletionVerdict(verdict, decided_by, reason, queries, results, alpha_b, alpha_m, membership, m_queries,
                           assumptions)


def decide(results: list[MarkerResult], membership: dict | None) -> tuple[str, str, str]:
    """(verdict, deciding signal, reason) from the marker tests and the membership check."""
    rejected = [r for r in results if r.verdict.verdict == NOT_HONORED]
    if rejected:
        r = rejected[0]
        return NOT_HONORED, f"backdoor:{r.family}", f"marker {r.family}: {r.verdict.reason}"
    if membership is not None and membership["flagged"]:
        return (NOT_HONORED, "membership",
                f"backdoor gone but membership remains (AUC {membership['auc']:.3f}, p={membership['p_value']:.2g})")
    conclusive = [r for r in results if r.verdict.verdict == HONORED]
    if conclusive:
        names = ", ".join(r.family for r in conclusive)
        return HONORED, f"backdoor:{names}", "; ".join(f"marker {r.family}: {r.verdict.reason}" for r in conclusive)
    return INCONCLUSIVE, "none", "; ".join(f"marker {r.family}: {r.verdict.reason}" for r in results)
