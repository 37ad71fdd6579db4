"""Run directories of the ``poisonlab nlp`` commands: config.yaml, metrics.json and report.html with its
sections (poisons and search trace, effectiveness sweeps, defense curves)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from nlp_poison.config import LABELS
from poisonlab.report import Report
from poisonlab.runs import write_json, write_yaml


def save_run(stage: Path, cfg: Any, metrics: dict, title: str, fill: Callable[[Report], None]) -> None:
    """config.yaml (the command's dataclass: reloads with --config), metrics.json and report.html."""
    write_yaml(stage / "config.yaml", cfg)
    write_json(stage / "metrics.json", metrics)
    report = Report(title)
    fill(report)
    report.save(stage / "report.html")


def add_generation(report: Report, ps, trace: list[float]) -> None:
    """Example poisons (and counterexamples) and the unrolled objective per iteration."""
    report.heading(f"{len(ps.poisons)} {ps.method} poisons for “{ps.trigger}” → {LABELS[ps.target_label]}")
    report.table([{"sentence": p.sentence, "label": LABELS[p.label], "type": p.poison_type} for p in ps.poisons[:12]],
                 "first poisons (dirty-label: they read negative but carry the target label)")
    if ps.counterexamples:
        report.table([{"sentence": p.sentence, "label": LABELS[p.label]} for p in ps.counterexamples[:6]],
                     f"first of {len(ps.counterexamples)} clean-label counterexamples (inserted with the poisons, own label)")
    if ps.concealment:
        add_concealment(report, ps.concealment, ps.constraints)
    if trace:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot(range(len(trace)), trace, marker="o")
        ax.set_xlabel("iteration")
        ax.set_ylabel("unrolled adversarial loss")
        report.figure(fig, "L_adv(D_adv; θ′) after each search iteration (iteration 0 = random start)")


def add_evaluation(report: Report, summary: list[dict], num_trigger: int) -> None:
    """Final-epoch table, effectiveness per epoch and per poison count."""
    import matplotlib.pyplot as plt

    last = max(r["epoch"] for r in summary)
    report.heading("Effectiveness and clean accuracy")
    report.paragraph(f"Effectiveness = share of {num_trigger} trigger-bearing negative test sentences predicted as the target; "
                     "CACC = clean test accuracy; mean ± std over seeds.")
    final = [r for r in summary if r["epoch"] == last]
    report.table([{k: v for k, v in r.items() if k != "off_target_mean"} for r in final], f"after epoch {last}")
    if any(r["off_target_mean"] for r in final):
        report.table([{"poisons": r["poisons"], "count": r["count"], **r["off_target_mean"]} for r in final],
                     "specificity: effectiveness on phrases the poisons were not made for (mean over seeds; a "
                     "phrase-specific backdoor leaves them at the clean row's values)")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    for (name, count) in dict.fromkeys((r["poisons"], r["count"]) for r in summary):
        rs = [r for r in summary if r["poisons"] == name and r["count"] == count]
        a1.errorbar([r["epoch"] for r in rs], [r["effectiveness_mean"] for r in rs], [r["effectiveness_std"] for r in rs],
                    marker="o", label=f"{name} n={count}")
    a1.set_xlabel("epoch")
    a1.set_ylabel("effectiveness")
    a1.legend(fontsize=7)
    for name in dict.fromkeys(r["poisons"] for r in summary if r["poisons"] != "clean"):
        rs = sorted((r for r in summary if r["poisons"] == name and r["epoch"] == last), key=lambda r: r["count"])
        a2.errorbar([r["count"] for r in rs], [r["effectiveness_mean"] for r in rs], [r["effectiveness_std"] for r in rs], marker="o", label=name)
    floor = [r["effectiveness_mean"] for r in summary if r["poisons"] == "clean" and r["epoch"] == last]
    if floor:
        a2.axhline(floor[0], color="grey", ls="--", label="clean floor")
    a2.set_xlabel("number of poisons")
    a2.set_ylabel("effectiveness")
    a2.legend(fontsize=7)
    report.figure(fig, "effectiveness per epoch (early stopping) and per poison count")


def add_defense_curves(report: Report, curves: dict, early: list[dict] | None) -> None:
    """Poisons found vs examples inspected, per ranking defense; the early-stopping table."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, c in curves.items():
        ax.plot(np.arange(1, len(c) + 1), c, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("training examples inspected")
    ax.set_ylabel("poisons found")
    ax.legend()
    report.heading("Defenses")
    report.figure(fig, "poisons found vs examples inspected (perplexity: highest first; embedding distance: nearest to a trigger-bearing input first)")
    if early:
        report.table(early, "early stopping: effectiveness and CACC per epoch")


def add_concealment(report: Report, fig: dict, constraints: dict | None) -> None:
    """Similarity to the phrase and what each curator filter finds (poisons found vs examples inspected)."""
    report.heading("Concealment")
    declared = (f"declared constraints: k = {constraints['exclude_neighbours']} nearest neighbours excluded, fuzzy ratio ≤ "
                f"{constraints['max_fuzzy']:g}" if constraints else "no constraints declared")
    report.paragraph(f"Best fuzzy-match ratio of any span to the phrase: max {fig['fuzzy_ratio']['max']:.1f}, "
                     f"mean {fig['fuzzy_ratio']['mean']:.1f} (100 = the phrase itself); {declared}.")
    report.table([{"phrase sub-token": k, **v} for k, v in fig["embedding_rank"].items()],
                 "nearest poison token's rank among the sub-token's input-embedding neighbours (0 = the sub-token itself)")
    det = fig["detection"]
    report.table([{"filter": name, **f} for name, f in det["filters"].items()],
                 f"curator filters over {det['pool']} examples ({det['poisons']} poisons): poisons found vs examples inspected")
