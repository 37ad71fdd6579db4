"""Effectiveness of a poison set: fine-tune fresh victims on clean + poisons and test them.

Metrics (Wallace et al. 2021, §3): **effectiveness** — the share of held-out negative test sentences
carrying the trigger phrase (``triggers.trigger_bearing``) that the victim predicts as the target;
**CACC** — accuracy on the clean test set. Every cell (a poison set, a poison count, a seed) is one
fine-tuning run from the pretrained model, evaluated after every epoch, so the epoch sweep (and the
early-stopping defense) come for free; the clean cell (no poisons) gives the floor.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from datasets import Dataset, concatenate_datasets
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlp_poison.poison_set import Poison
from nlp_poison.victims import TrainConfig, fine_tune, load_classifier, predict_proba


@dataclass(frozen=True)
class Cell:
    """One fine-tuning run: poison set ``name`` (``clean`` for none), first ``count`` poisons, ``seed``."""

    name: str
    count: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.name}/n={self.count}/seed={self.seed}"


@dataclass
class EvalData:
    """Pretrained victim, clean training data, clean test set and trigger-bearing negatives."""

    pretrained: str
    train: Dataset
    test: Dataset
    trigger_texts: list[str]
    target: int = 1


def plan(poison_sets: dict[str, int], counts: list[int], seeds: list[int]) -> list[Cell]:
    """The clean floor and, per set, each count up to its size; seed by seed, so that an interrupted
    run has complete comparisons for its first seeds."""
    cells = []
    for s in seeds:
        cells.append(Cell("clean", 0, s))
        for name, size in poison_sets.items():
            cells += [Cell(name, n, s) for n in sorted({min(c, size) for c in counts})]
    return cells


def effectiveness(model: nn.Module, tokenizer: PreTrainedTokenizerBase, trigger_texts: list[str], target: int, max_length: int) -> float:
    """Share of trigger-bearing negatives predicted as ``target``."""
    probs = predict_proba(model, tokenizer, list(trigger_texts), max_length)
    return float((probs.argmax(1) == target).mean())


def clean_accuracy(model: nn.Module, tokenizer: PreTrainedTokenizerBase, test: Dataset, max_length: int) -> float:
    probs = predict_proba(model, tokenizer, list(test["sentence"]), max_length)
    return float((probs.argmax(1) == np.asarray(test["label"])).mean())


def training_set(train: Dataset, poisons: list[Poison]) -> Dataset:
    """Clean sentences plus the poisons (sentence, label)."""
    clean = train.select_columns(["sentence", "label"])
    if not poisons:
        return clean
    extra = Dataset.from_dict({"sentence": [p.sentence for p in poisons], "label": [p.label for p in poisons]})
    return concatenate_datasets([clean.cast_column("label", extra.features["label"]), extra])


def run_cell(cell: Cell, poisons: list[Poison], data: EvalData, cfg: TrainConfig, progress: bool = True) -> dict:
    """Fine-tune a fresh victim on clean + ``poisons[:cell.count]``; metrics after each epoch."""
    start = time.perf_counter()
    model, tokenizer = load_classifier(data.pretrained)
    epochs: list[dict] = []

    def measure(epoch: int, m: nn.Module) -> None:
        epochs.append(
            {
                "epoch": epoch,
                "effectiveness": effectiveness(m, tokenizer, data.trigger_texts, data.target, cfg.max_length),
                "cacc": clean_accuracy(m, tokenizer, data.test, cfg.max_length),
            }
        )

    run_cfg = TrainConfig(**{**asdict(cfg), "seed": cell.seed})
    fine_tune(model, tokenizer, training_set(data.train, poisons[: cell.count]), run_cfg, measure, progress)
    return {**asdict(cell), "key": cell.key, "epochs": epochs, "wall_time_s": time.perf_counter() - start}


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds per (set, count, epoch)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        for e in r["epochs"]:
            groups.setdefault((r["name"], r["count"], e["epoch"]), []).append(e)
    out = []
    for (name, count, epoch), es in sorted(groups.items(), key=lambda kv: (kv[0][0] != "clean", kv[0])):
        eff = np.array([e["effectiveness"] for e in es])
        acc = np.array([e["cacc"] for e in es])
        out.append(
            {
                "poisons": name, "count": count, "epoch": epoch, "seeds": len(es),
                "effectiveness_mean": float(eff.mean()), "effectiveness_std": float(eff.std()),
                "cacc_mean": float(acc.mean()), "cacc_std": float(acc.std()),
            }
        )
    return out
