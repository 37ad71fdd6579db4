"""Demo step: mark → train → delete (honest retrain, dishonest no-op) → verify, on MNIST.

One owner of ten marks half its samples with the key-derived LSB watermark; the provider trains the
lab's SmallCNN, then answers the deletion request by retraining without the owner (honest) or by
doing nothing (dishonest). The owner verifies with Athena's exact binomial test at α = β = 10⁻³.
"""

from __future__ import annotations

from pathlib import Path

import torch

from poisonlab import data
from poisonlab.report import Report
from poisonlab.runs import write_json, write_yaml
from poisonlab.unlearn_report import marked_examples
from unlearning_verify import bench, training
from unlearning_verify.keys import OwnerKey
from unlearning_verify.watermarks import build

COLUMNS = ("behaviour", "honest", "verdict", "reason", "queries", "sprt_verdict", "sprt_queries", "p_hat", "q_hat",
           "basr_after", "clean_accuracy_after", "membership_auc", "membership_flagged")


TINY = {"train": training.TrainConfig(epochs=2), "train_samples": 3000}


def run(out: Path, size: str, seed: int, report: Report, cores: int | None = None) -> dict:
    """Write ``out/unlearn-lsb`` (config, trials, metrics, verdict, report) and add the demo section.

    ``size``: "tiny" trains on 3,000 samples for 2 epochs, "quick" the two main behaviours, "full" five.
    One process and thread whatever ``cores`` (the demo's step signature)."""
    quick = size != "full"
    torch.set_num_threads(1)
    ds = data.load("mnist")
    x, y = data.image_tensors(ds["train"])
    xt, yt = data.image_tensors(ds["test"])
    behaviours = ["retrain", "noop"] if quick else ["retrain", "noop", "stale", "partial", "input_transform"]
    cfg = bench.BenchConfig(families=["lsb"], behaviours=behaviours, seeds=[seed], **(TINY if size == "tiny" else {}))
    rows: list[dict] = []
    bench.run(cfg, x, y, xt, yt, 10, set(), rows.append)
    run_dir = out / "unlearn-lsb"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "config.yaml", {"data": "mnist", **cfg.__dict__})
    write_json(run_dir / "metrics.json", {"trials": rows, "summary": bench.summarise(rows)})
    write_json(run_dir / "verdict.json", {r["behaviour"]: {"verdict": r["verdict"], "queries": r["queries"]} for r in rows})
    table = [{k: r[k] for k in COLUMNS} for r in rows]
    wm = build(OwnerKey.generate(cfg.owner, "lsb", 10, seed=seed), (1, 28, 28))
    for rep in (report, Report("Unlearning verification demo")):
        rep.heading("Unlearning verification: LSB watermark, honest vs dishonest provider")
        rep.paragraph(
            f"Owner {cfg.owner} of {cfg.num_owners} marks {cfg.rate:.0%} of its MNIST samples with a key-derived "
            f"LSB marker (≤ 15/255 per pixel; PSNR {rows[0]['invisibility_psnr']:.1f} dB) relabelled to class "
            f"{rows[0]['target']}. BASR before deletion {rows[0]['p_hat']:.3f}; clean-accuracy cost "
            f"{100 * rows[0]['marking_cost']:.2f} points. Verdicts at α = β = 10⁻³ (exact binomial test; SPRT "
            "alongside); the membership check runs on the owner's unmarked samples.")
        marked_examples(rep, {"lsb": wm}, xt[:3], "Original, LSB-marked, |Δ|×10 (the change is invisible)")
        rep.table(table, caption="Verdict per provider behaviour")
        if rep is not report:
            rep.save(run_dir / "report.html")
    return {r["behaviour"]: {"verdict": r["verdict"], "queries": r["queries"], "correct": r["correct"]} for r in rows}
