"""Activation clustering (Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by
Activation Clustering", AAAI-SafeAI 2019, arXiv 1811.03728, §3).

For each class (by its given label), the activations of a named hidden layer (the penultimate one,
not the logits) are reduced to ``n_components`` dimensions (PCA by default, or the paper's ICA) and
split by k-means with k = 2. PCA is the default because FastICA whitens every component to unit
variance: the direction that separates poison from clean data then weighs no more than nine noise
directions. In the 5→2 backdoored MNIST study (scripts/bench_activation_clustering.py) every class's
silhouette sat at 0.08–0.12 with ICA (class 2: 0.10, nothing flagged), against 0.44–0.51 for class 2
and at most 0.35 for the clean classes with PCA (3 seeds). A backdoor shows as one class whose activations fall into two well-separated clusters, the
smaller one holding the poisoned inputs. Analyses per class (§3.2):
- relative size of the smaller cluster (poison is a minority of its target class);
- silhouette score of the 2-clustering (high = two genuinely distinct groups);
- distance: the small cluster's mean activation against its own class's main cluster and the other
  classes' (a ratio > 1 means it lies closer to another class);
- exclusionary reclassification (optional ``retrain``): a model trained without the suspect clusters
  classifies them; ER = (# still given their label) / (# given the most common other label),
  ER < 1 marks poison whose source class is that other label.
A class is flagged when its silhouette is ≥ ``silhouette_threshold`` and its smaller cluster is at
most ``size_threshold`` of the class (and, when computed, ER < 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA, FastICA
from sklearn.metrics import silhouette_score
from torch import nn

from labcore.errors import InputError


@dataclass
class ClassAnalysis:
    """The 2-means split of one class's reduced activations."""

    label: int
    count: int
    silhouette: float
    relative_size: float
    cluster_sizes: tuple[int, int]
    suspect_indices: np.ndarray
    distance_ratio: float
    nearest_other_class: int
    exclusionary_score: float | None = None
    exclusionary_source: int | None = None
    flagged: bool = False


@dataclass
class ActivationClusteringResult:
    """Per-class analyses, the flagged classes and the union of their suspect indices."""

    per_class: dict[int, ClassAnalysis]
    flagged_classes: list[int]
    suspect_indices: np.ndarray
    layer: str
    reduction: str
    n_components: int
    thresholds: dict[str, float] = field(default_factory=dict)

    def table(self) -> list[dict]:
        """One row per class (for reports)."""
        return [{
            "class": a.label, "n": a.count, "silhouette": round(a.silhouette, 4),
            "relative size": round(a.relative_size, 4), "distance ratio": round(a.distance_ratio, 4),
            "nearest other class": a.nearest_other_class,
            "ER score": None if a.exclusionary_score is None else round(a.exclusionary_score, 4),
            "ER source": a.exclusionary_source,
            "flagged": a.flagged,
        } for a in self.per_class.values()]


@torch.no_grad()
def layer_activations(model: nn.Module, layer: str, inputs: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Flattened outputs of ``model.<layer>`` for every input, in eval mode."""
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        names = ", ".join(n for n, _ in model.named_modules() if n) or "(none)"
        raise InputError(f"model has no layer {layer!r}; choose one of: {names}") from None
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out.detach().flatten(1).float().cpu()))
    was_training = model.training
    model.eval()
    try:
        for chunk in inputs.split(batch_size):
            model(chunk)
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured)


def reduce(acts: np.ndarray, n_components: int, reduction: str, seed: int) -> np.ndarray:
    """PCA or ICA (Chen et al.'s choice) to at most ``n_components`` dimensions."""
    k = max(1, min(n_components, acts.shape[0] - 1, acts.shape[1]))
    if reduction == "ica":
        return FastICA(n_components=k, random_state=seed, whiten="unit-variance", max_iter=1000, tol=1e-3).fit_transform(acts)
    return PCA(n_components=k, random_state=seed).fit_transform(acts)


def detect(
    model: nn.Module,
    layer: str,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_components: int = 10,
    reduction: str = "pca",
    seed: int = 0,
    batch_size: int = 512,
    silhouette_threshold: float = 0.15,
    size_threshold: float = 0.35,
    retrain: Callable[[np.ndarray], nn.Module] | None = None,
) -> ActivationClusteringResult:
    """Run activation clustering on (``inputs``, ``labels``) with ``model``'s layer ``layer``.

    ``retrain(keep_mask) -> model`` enables exclusionary reclassification: it must return a model
    trained on the inputs where ``keep_mask`` is true.
    """
    if reduction not in ("ica", "pca"):
        raise InputError(f"reduction must be 'ica' or 'pca', got {reduction!r}")
    if len(inputs) != len(labels):
        raise InputError(f"{len(inputs)} inputs but {len(labels)} labels; pass one label per input")
    acts = layer_activations(model, layer, inputs, batch_size).numpy().astype(np.float64)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    classes = [int(c) for c in np.unique(y) if (y == c).sum() >= 4]
    splits: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
    for c in classes:
        idx = np.flatnonzero(y == c)
        reduced = reduce(acts[idx], n_components, reduction, seed)
        assign = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(reduced)
        sil = float(silhouette_score(reduced, assign)) if len(set(assign)) == 2 else 0.0
        small = int(np.bincount(assign, minlength=2).argmin())
        splits[c] = (idx[assign != small], idx[assign == small], sil)
    centroids = {c: acts[main].mean(axis=0) for c, (main, _, _) in splits.items()}
    per_class: dict[int, ClassAnalysis] = {}
    for c, (main, small, sil) in splits.items():
        centre = acts[small].mean(axis=0)
        others = {o: float(np.linalg.norm(centre - centroids[o])) for o in centroids if o != c}
        nearest = min(others, key=others.get) if others else c
        own = float(np.linalg.norm(centre - centroids[c]))
        ratio = own / others[nearest] if others and others[nearest] > 0 else 0.0
        size = len(small) / (len(small) + len(main))
        per_class[c] = ClassAnalysis(
            label=c, count=len(small) + len(main), silhouette=sil, relative_size=size,
            cluster_sizes=(len(main), len(small)), suspect_indices=np.sort(small),
            distance_ratio=ratio, nearest_other_class=nearest,
            flagged=sil >= silhouette_threshold and size <= size_threshold,
        )
    if retrain is not None:
        exclusionary_reclassification(per_class, inputs, y, retrain, batch_size)
    flagged = [c for c, a in per_class.items() if a.flagged]
    suspects = np.sort(np.concatenate([per_class[c].suspect_indices for c in flagged])) if flagged else np.array([], int)
    return ActivationClusteringResult(
        per_class=per_class, flagged_classes=flagged, suspect_indices=suspects.astype(np.int64), layer=layer,
        reduction=reduction, n_components=n_components,
        thresholds={"silhouette": silhouette_threshold, "relative_size": size_threshold},
    )


def exclusionary_reclassification(
    per_class: dict[int, ClassAnalysis], inputs: torch.Tensor, y: np.ndarray,
    retrain: Callable[[np.ndarray], nn.Module], batch_size: int,
) -> None:
    """Retrain once without every class's smaller cluster, then score each cluster (Chen et al. §3.2)."""
    keep = np.ones(len(y), dtype=bool)
    for a in per_class.values():
        keep[a.suspect_indices] = False
    with torch.enable_grad():
        model = retrain(keep)
    model.eval()
    for a in per_class.values():
        if len(a.suspect_indices) == 0:
            continue
        x = inputs[torch.as_tensor(a.suspect_indices)]
        with torch.no_grad():
            pred = torch.cat([model(chunk).argmax(1) for chunk in x.split(batch_size)]).cpu().numpy()
        own = int((pred == a.label).sum())
        counts = np.bincount(pred[pred != a.label], minlength=1)
        other = int(counts.argmax()) if counts.sum() else a.label
        a.exclusionary_score = own / max(int(counts.max()) if counts.sum() else 0, 1)
        a.exclusionary_source = other
        a.flagged = a.flagged and a.exclusionary_score < 1.0
