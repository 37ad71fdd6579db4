"""Reproduce Chen et al.'s activation-clustering study on a 5 → 2 backdoored MNIST classifier.

A SmallCNN is trained centrally on the MNIST train split plus triggered copies of a fraction of the
5s labelled 2. Activation clustering on the penultimate layer (``features``) is run twice: on the
poisoned training set, and on the benign-only training set, each with exclusionary reclassification
(a model retrained without the suspect clusters classifies them). Writes ``metrics.json`` (per-class
silhouettes, flagged classes, detection TPR/FPR) and ``report.html`` to ``--out``.

    nice -n 10 .venv/bin/python scripts/bench_activation_clustering.py --out runs/ac_mnist --seed 0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from fedharness.attacks.pixel_backdoor import PixelPattern
from fedharness.detection import activation_clustering
from fedharness.tasks.image_classification import SmallCNN
from poisonlab import data
from poisonlab.report import Report
from poisonlab.runs import staged_output, write_json

SOURCE, TARGET = 5, 2


def poisoned_training_set(x, y, fraction: float, seed: int):
    """Clean data plus triggered copies of ``fraction`` of the 5s, labelled 2; returns the poison mask."""
    g = torch.Generator().manual_seed(seed)
    fives = torch.nonzero(y == SOURCE).flatten()
    pick = fives[torch.randperm(len(fives), generator=g)[: int(fraction * len(fives))]]
    x_p = PixelPattern().apply(x[pick])
    xs = torch.cat([x, x_p])
    ys = torch.cat([y, torch.full((len(pick),), TARGET, dtype=y.dtype)])
    mask = np.r_[np.zeros(len(x), bool), np.ones(len(pick), bool)]
    return xs, ys, mask


def train(x, y, epochs: int, seed: int) -> SmallCNN:
    torch.manual_seed(seed)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model, x, y) -> float:
    return float((model(x).argmax(1) == y).float().mean())


def silhouette_figure(poisoned: dict, benign: dict) -> plt.Figure:
    classes = sorted(poisoned)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    w = 0.38
    ax.bar(np.arange(10) - w / 2, [poisoned[c] for c in classes], w, label="poisoned training set")
    ax.bar(np.arange(10) + w / 2, [benign[c] for c in classes], w, label="benign-only training set")
    ax.set(xticks=range(10), xlabel="class (label)", ylabel="silhouette of the 2-means split",
           title=f"Activation clustering, {SOURCE}→{TARGET} backdoor")
    ax.legend()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/ac_mnist"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction", type=float, default=0.5, help="share of the 5s copied with the trigger")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--reduction", choices=["ica", "pca"], default="pca")
    parser.add_argument("--no-retrain", action="store_true", help="skip exclusionary reclassification")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    ds = data.load("mnist")
    x, y = data.image_tensors(ds["train"])
    x_test, y_test = data.image_tensors(ds["test"])
    xs, ys, poison = poisoned_training_set(x, y, args.fraction, args.seed)
    with staged_output(args.out) as stage:
        model = train(xs, ys, args.epochs, args.seed)
        fives = y_test == SOURCE
        asr = float((model(PixelPattern().apply(x_test[fives])).argmax(1) == TARGET).float().mean())
        mta = accuracy(model, x_test, y_test)
        def retrainer(inputs, labels):
            return None if args.no_retrain else (lambda keep: train(inputs[keep], labels[keep], args.epochs, args.seed))

        on_poisoned = activation_clustering.detect(model, "features", xs, ys, reduction=args.reduction, seed=args.seed,
                                                   retrain=retrainer(xs, ys))
        on_benign = activation_clustering.detect(model, "features", x, y, reduction=args.reduction, seed=args.seed,
                                                 retrain=retrainer(x, y))
        flagged = np.zeros(len(ys), bool)
        flagged[on_poisoned.suspect_indices] = True
        metrics = {
            "seed": args.seed, "poisoned_samples": int(poison.sum()), "class_2_poison_share": float(
                poison.sum() / (ys == TARGET).sum()),
            "main_accuracy": mta, "attack_success_rate": asr,
            "poisoned": {"flagged_classes": on_poisoned.flagged_classes, "per_class": on_poisoned.table()},
            "benign_only": {"flagged_classes": on_benign.flagged_classes, "per_class": on_benign.table()},
            "reduction": args.reduction, "epochs": args.epochs, "fraction": args.fraction,
            "detection_tpr": float(flagged[poison].mean()), "detection_fpr": float(flagged[~poison].mean()),
            "wall_time_s": time.perf_counter() - start,
        }
        write_json(stage / "metrics.json", metrics)
        report = Report("Activation clustering on a 5→2 backdoored MNIST model")
        report.paragraph(
            f"SmallCNN trained on {len(x)} clean MNIST images plus {int(poison.sum())} triggered 5s labelled 2 "
            f"(MTA {mta:.3f}, ASR {asr:.3f}). Penultimate layer 'features', {args.reduction.upper()} to 10 dims, "
            f"k-means k=2 per class, exclusionary reclassification by a model retrained without the suspect clusters. Detection on the poisoned set: TPR {metrics['detection_tpr']:.3f}, "
            f"FPR {metrics['detection_fpr']:.4f}.")
        report.figure(silhouette_figure({r["class"]: r["silhouette"] for r in on_poisoned.table()},
                                        {r["class"]: r["silhouette"] for r in on_benign.table()}))
        report.table(on_poisoned.table(), f"Poisoned training set: flagged {on_poisoned.flagged_classes}")
        report.table(on_benign.table(), f"Benign-only training set: flagged {on_benign.flagged_classes}")
        report.save(stage / "report.html")
    print({k: v for k, v in metrics.items() if k not in ("poisoned", "benign_only")})
    for name, res in (("poisoned", on_poisoned), ("benign-only", on_benign)):
        print(name, "flagged", res.flagged_classes,
              "silhouettes", {r["class"]: r["silhouette"] for r in res.table()},
              "relative sizes", {r["class"]: r["relative size"] for r in res.table()},
              "ER", {r["class"]: r["ER score"] for r in res.table()})


if __name__ == "__main__":
    main()
