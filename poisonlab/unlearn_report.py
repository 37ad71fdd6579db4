"""Report sections for unlearning verification: example marked images, verdict tables."""

from __future__ import annotations

import torch

from poisonlab.report import Report
from unlearning_verify.watermarks import ImageWatermark


def marked_examples(report: Report, watermarks: dict[str, ImageWatermark], images: torch.Tensor, caption: str) -> None:
    """One row per family: the original images, then the triggered ones, then |Δ| ×10."""
    shown, labels = [], []
    for family, wm in watermarks.items():
        trig = wm.trigger(images)
        for i in range(len(images)):
            shown += [images[i, 0].numpy(), trig[i, 0].numpy(), ((trig[i, 0] - images[i, 0]).abs() * 10).clamp(0, 1).numpy()]
            labels += ["original", f"{family} → {wm.target}", "|Δ|×10"]
    report.image_grid(shown, labels, ncols=3 * len(images), caption=caption)


def bench_report(report: Report, cfg, summary: list[dict], examples: torch.Tensor) -> None:
    """The benchmark's report: the FPR/FNR matrix with queries, then example marked images per family."""
    from unlearning_verify.keys import OwnerKey
    from unlearning_verify.watermarks import build

    report.paragraph(
        f"Owner {cfg.owner} of {cfg.num_owners} marks {cfg.rate:.0%} of its samples; α = {cfg.alpha:g}, "
        f"β = {cfg.beta:g}, backdoor query budget {cfg.max_queries}; {len(cfg.seeds)} seeds. FPR = NOT HONORED on "
        "honest providers, FNR = HONORED on dishonest ones; decided_by = which signal decided (a marker's "
        "backdoor test or the membership check on the owner's unmarked samples).")
    matrix = [{k: s.get(k) for k in ("family", "behaviour", "honest", "trials", "fpr", "fnr", "inconclusive",
                                      "queries_mean", "queries_max", "membership_queries_mean", "decided_by")}
              for s in summary]
    report.table(matrix, caption="FPR/FNR matrix: behaviour × verifier, queries used")
    membership = [{k: s.get(k) for k in ("family", "behaviour", "honest", "trials", "membership_auc", "membership_auc_sd",
                                          "membership_auc_min", "membership_auc_max", "membership_flag_rate",
                                          "membership_auc_genuine", "membership_auc_marked_originals", "basr_after")}
                  for s in summary]
    report.table(membership, caption="Membership statistic (reference-calibrated loss AUC on the owner's samples) per "
                                     "behaviour: mean, sd, range over seeds; flagged = p < α_m; the AUC on the owner's "
                                     "genuine samples and on the originals of its marked samples separately")
    report.table(summary, caption="All rates per watermark family and provider behaviour")
    wms = {f: build(OwnerKey.generate(cfg.owner, f, 10, seed=cfg.seeds[0]), tuple(examples.shape[1:]))
           for f in cfg.families if f != "hidden_trigger"}
    if wms:
        marked_examples(report, wms, examples[:2], "Example marked images per family (original, triggered, |Δ|×10)")
