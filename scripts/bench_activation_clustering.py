"""Reproduce Chen et al.'s activation-clustering study on a 5 → 2 backdoored MNIST classifier.

Per seed, two LeNet-style CNNs (conv32-conv64, a 128-unit hidden layer ``features``, dropout 0.5)
are trained centrally: one on the MNIST train split plus triggered copies of ``--fraction`` of the
5s labelled 2 (the poisoned training set), one on the benign-only train split. Activation clustering
runs on each model's own training set: penultimate layer ``features``, PCA (or ICA) to 10 dims,
2-means per class, exclusionary reclassification by a model retrained without the suspect
clusters. The figure of merit is class 2's silhouette against the largest clean-class silhouette.

Why this model and not the harness's SmallCNN: with SmallCNN's narrow 64-unit layer, the triggered
5s sit inside the 2s' region (silhouette of the true poison/clean split of class 2: 0.27), so no
2-means split can stand out; digit 1 (upright vs slanted) then has the highest silhouette (0.34).
A wider layer with dropout keeps the source digit's features in the poison's activations.

Writes ``metrics.json`` (per seed: per-class silhouettes for both training sets, flagged classes,
detection TPR/FPR, MTA/ASR) and ``report.html`` to ``--out``.

    nice -n 10 .venv/bin/python scripts/bench_activation_clustering.py --out runs/ac_mnist --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fedharness.attacks.pixel_backdoor import PixelPattern
from fedharness.detection import activation_clustering
from poisonlab import data
from poisonlab.report import Report
from poisonlab.runs import staged_output, write_json

SOURCE, TARGET = 5, 2


class LeNetDropout(nn.Module):
    """conv(32, 5×5)-ReLU-pool, conv(64, 5×5)-ReLU-pool, fc(128)-ReLU = ``features``, dropout, fc(10)."""

    def __init__(self, hidden: int = 128, dropout: float = 0.5) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.features = nn.Sequential(nn.Linear(64 * 4 * 4, hidden), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(self.body(x))))


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


def train(x, y, epochs: int, seed: int) -> LeNetDropout:
    """Adam 1e-3, batch 64, ``epochs`` passes in a seeded order."""
    torch.manual_seed(seed)
    model = LeNetDropout()
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


def silhouettes(result: activation_clustering.ActivationClusteringResult) -> dict[int, float]:
    return {c: a.silhouette for c, a in result.per_class.items()}


def silhouette_figure(poisoned: dict, benign: dict, seed: int) -> plt.Figure:
    classes = sorted(poisoned)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    w = 0.38
    ax.bar(np.arange(10) - w / 2, [poisoned[c] for c in classes], w, label="backdoored model, poisoned training set")
    ax.bar(np.arange(10) + w / 2, [benign[c] for c in classes], w, label="clean model, benign-only training set")
    ax.set(xticks=range(10), xlabel="class (label)", ylabel="silhouette of the 2-means split",
           title=f"Activation clustering, {SOURCE}→{TARGET} backdoor, seed {seed}")
    ax.legend(fontsize=8)
    return fig


def study(x, y, x_test, y_test, args, seed: int) -> tuple[dict, plt.Figure, list[dict], list[dict]]:
    """One seed: the backdoored and the clean model, each clustered on its own training set."""
    xs, ys, poison = poisoned_training_set(x, y, args.fraction, seed)
    backdoored = train(xs, ys, args.epochs, seed)
    clean = train(x, y, args.epochs, seed)
    fives = y_test == SOURCE
    asr = accuracy(backdoored, PixelPattern().apply(x_test[fives]), torch.full((int(fives.sum()),), TARGET))

    def retrainer(inputs, labels):
        return None if args.no_retrain else (lambda keep: train(inputs[keep], labels[keep], args.epochs, seed))

    kw = {"reduction": args.reduction, "seed": seed}
    on_poisoned = activation_clustering.detect(backdoored, "features", xs, ys, retrain=retrainer(xs, ys), **kw)
    on_benign = activation_clustering.detect(clean, "features", x, y, retrain=retrainer(x, y), **kw)
    flagged = np.zeros(len(ys), bool)
    flagged[on_poisoned.suspect_indices] = True
    sil_p, sil_b = silhouettes(on_poisoned), silhouettes(on_benign)
    clean_max = max(v for c, v in sil_p.items() if c != TARGET)
    row = {
        "seed": seed, "poisoned_samples": int(poison.sum()),
        "class_2_poison_share": float(poison.sum() / (ys == TARGET).sum()),
        "main_accuracy_backdoored": accuracy(backdoored, x_test, y_test), "attack_success_rate": asr,
        "main_accuracy_clean": accuracy(clean, x_test, y_test),
        "silhouette_class_2_poisoned": sil_p[TARGET], "max_clean_class_silhouette_poisoned": clean_max,
        "max_clean_class": max((v, c) for c, v in sil_p.items() if c != TARGET)[1],
        "silhouette_class_2_benign_only": sil_b[TARGET],
        "flagged_poisoned": on_poisoned.flagged_classes, "flagged_benign_only": on_benign.flagged_classes,
        "detection_tpr": float(flagged[poison].mean()), "detection_fpr": float(flagged[~poison].mean()),
        "silhouettes_poisoned": sil_p, "silhouettes_benign_only": sil_b,
    }
    return row, silhouette_figure(sil_p, sil_b, seed), on_poisoned.table(), on_benign.table()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/ac_mnist"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fraction", type=float, default=0.5, help="share of the 5s copied with the trigger")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--reduction", choices=["ica", "pca"], default="pca")
    parser.add_argument("--no-retrain", action="store_true", help="skip exclusionary reclassification")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    ds = data.load("mnist")
    x, y = data.image_tensors(ds["train"])
    x_test, y_test = data.image_tensors(ds["test"])
    with staged_output(args.out) as stage:
        report = Report("Activation clustering on a 5→2 backdoored MNIST model")
        report.paragraph(
            f"Per seed: a LeNet-style CNN trained on {len(x)} clean MNIST images plus triggered copies of "
            f"{args.fraction:.0%} of the 5s labelled 2, and one trained on the clean images only ({args.epochs} "
            f"epochs each). Penultimate layer 'features' (128 units), {args.reduction.upper()} to 10 dims, k-means "
            "k=2 per class, exclusionary reclassification by a model retrained without the suspect clusters.")
        rows = []
        for seed in tqdm(args.seeds, desc="seeds"):
            row, fig, poisoned_table, benign_table = study(x, y, x_test, y_test, args, seed)
            rows.append(row)
            report.heading(f"Seed {seed}")
            report.figure(fig)
            report.table(poisoned_table, f"Backdoored model, poisoned training set: flagged {row['flagged_poisoned']}")
            report.table(benign_table, f"Clean model, benign-only training set: flagged {row['flagged_benign_only']}")
        summary = [{k: v for k, v in r.items() if not k.startswith("silhouettes_")} for r in rows]
        report.heading("Summary")
        report.table(summary)
        write_json(stage / "metrics.json", {
            "args": {k: str(v) for k, v in vars(args).items()}, "seeds": rows, "wall_time_s": time.perf_counter() - start})
        report.save(stage / "report.html")
    for r in summary:
        print(r)


if __name__ == "__main__":
    main()
