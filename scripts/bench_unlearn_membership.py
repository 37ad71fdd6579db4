"""Read an `unlearn bench` folder: the FPR/FNR matrix with counts, and the membership statistic under
the honest and the adaptive providers, with the power a loss-based membership test can reach.

The adaptive providers that keep the owner's data without the markers (trigger_unlearning,
unmark_retrain, scrubbing when activation clustering finds every marked sample) leave one black-box
signal: membership of the owner's samples. Its effect is the AUC excess δ = AUC − ½ of the served
model's calibrated losses, members vs non-members. The Mann–Whitney test on n₁ members and n₂
non-members has, to first order, standard error se = √((n₁+n₂+1)/(12 n₁ n₂)) for the AUC, so its
power at level α_m is Φ(δ/se − z_{α_m}); 95 % power needs δ/se ≥ z_{α_m} + z_{0.05}. Printed: the
mean δ per behaviour over the seeds, the power that follows for the bench's n₁, n₂, α_m, and the n₁
(with n₂ = 2 n₁) that would reach 95 % power at that δ. Also the overlap with the honest providers:
the share of a behaviour's trials whose AUC exceeds every honest trial's (retrain, sisa), and how
often the diagnostic tests on the owner's genuine samples alone (``membership_p_genuine``) would
reject at α_m.

    python scripts/bench_unlearn_membership.py runs/unlearn-bench [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

from scipy.stats import norm


def se_auc(n1: int, n2: int) -> float:
    return math.sqrt((n1 + n2 + 1) / (12 * n1 * n2))


def needed_members(delta: float, alpha: float, power: float = 0.95, ratio: int = 2) -> int | None:
    """Smallest n₁ (with n₂ = ratio·n₁) whose test reaches ``power`` at AUC excess ``delta``."""
    if delta <= 0:
        return None
    z = norm.isf(alpha) + norm.isf(1 - power)
    n1 = 1
    while delta / se_auc(n1, ratio * n1) < z:
        n1 = math.ceil(n1 * 1.05) + 1
        if n1 > 10**7:
            return None
    return n1


HONEST_EXACT = ("retrain", "sisa")


def analyse(rows: list[dict]) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["family"], r["behaviour"])].append(r)
    honest_aucs = [r["membership_auc"] for r in rows if r["behaviour"] in HONEST_EXACT and r.get("membership_auc") is not None]
    out = []
    for (family, behaviour), rs in sorted(groups.items()):
        honest = rs[0]["honest"]
        wrong = sum(r["verdict"] == ("NOT HONORED" if honest else "HONORED") for r in rs)
        aucs = [r["membership_auc"] for r in rs if r.get("membership_auc") is not None]
        n1 = rs[0]["owner_samples"]
        n2 = max(1, rs[0]["membership_queries"] - n1)
        alpha_m = rs[0].get("alpha_membership") or 0.0
        delta = sum(aucs) / len(aucs) - 0.5 if aucs else 0.0
        row = {
            "family": family, "behaviour": behaviour, "honest": honest, "trials": len(rs),
            "wrong": wrong, "rate": f"{'FPR' if honest else 'FNR'} {wrong}/{len(rs)}",
            "not_honored": sum(r["verdict"] == "NOT HONORED" for r in rs),
            "inconclusive": sum(r["verdict"] == "INCONCLUSIVE" for r in rs),
            "decided_by": dict(sorted(_count(r["decided_by"] for r in rs).items())),
            "backdoor_queries_max": max(r["queries"] for r in rs), "membership_queries": rs[0]["membership_queries"],
            "basr_after": sum(r["basr_after"] for r in rs) / len(rs),
            "auc_mean": sum(aucs) / len(aucs) if aucs else None, "auc_min": min(aucs, default=None),
            "auc_max": max(aucs, default=None), "flagged": sum(bool(r.get("membership_flagged")) for r in rs),
        }
        if honest_aucs and aucs:
            row["above_every_honest_auc"] = sum(a > max(honest_aucs) for a in aucs)
        genuine = [r["membership_p_genuine"] for r in rs if r.get("membership_p_genuine") is not None]
        if genuine and alpha_m > 0:
            row["genuine_only_rejects"] = sum(p < alpha_m for p in genuine)
        if alpha_m > 0 and aucs:
            row["power_at_mean_delta"] = float(norm.sf(norm.isf(alpha_m) - delta / se_auc(n1, n2)))
            row["members_for_95pct_power"] = needed_members(delta, alpha_m)
        out.append(row)
    return out


def _count(items) -> dict:
    c: dict = defaultdict(int)
    for i in items:
        c[i] += 1
    return dict(c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.folder / "trials.jsonl").read_text().splitlines() if line.strip()]
    table = analyse(rows)
    for r in table:
        extra = (f" δ-power {r['power_at_mean_delta']:.2f}, n₁ for 95 % {r['members_for_95pct_power']}"
                 if "power_at_mean_delta" in r else "")
        print(f"{r['family']:>6} {r['behaviour']:>22} {r['rate']:>10}  NOT {r['not_honored']:>2} INC {r['inconclusive']}  "
              f"q≤{r['backdoor_queries_max']}+{r['membership_queries']}  BASR {r['basr_after']:.2f}  "
              f"AUC {r['auc_mean']:.3f} [{r['auc_min']:.3f}, {r['auc_max']:.3f}] flagged {r['flagged']} "
              f">honest {r.get('above_every_honest_auc')} genuine-only {r.get('genuine_only_rejects')}{extra}  "
              f"{r['decided_by']}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
