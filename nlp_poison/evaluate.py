"""Effectiveness of a poison set: fine-tune fresh victims on clean + poisons and test them.

Metrics (Wallace et al. 2021, §3): **effectiveness** — the share of held-out negative test sentences
carrying the trigger phrase (``triggers.trigger_bearing``) that the victim predicts as the target;
**CACC** — accuracy on the clean test set; **off-target effectiveness** — the same share for phrases
the poisons were not made for (specificity: a phrase-specific backdoor leaves them at their clean
floor). Every cell (a poison set, a poison count, a seed) is one fine-tuning run from the pretrained
model, evaluated after every epoch, so the epoch sweep (and the early-stopping defense) come for
free; the clean cell (no poisons) gives the floor.

Entry points: ``evaluate(data, EvaluateConfig, …) -> EvaluateResult`` (the sweep over poison sets,
counts and victim seeds, resumable cell by cell) and ``train_clean(data, CleanConfig) -> CleanResult``
(the clean classifier: the attacker's surrogate and the clean floor).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets
from torch import nn
from transformers import PreTrainedTokenizerBase

from labcore.errors import InputError
from nlp_poison import dataset_card
from nlp_poison.config import CleanConfig, EvaluateConfig, TrainConfig
from nlp_poison.overlap import content_words
from nlp_poison.poison_set import Poison, PoisonSet
from nlp_poison.triggers import trigger_texts
from nlp_poison.victims import default_model, fine_tune, load_classifier, predict_proba, subsample


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
    """Pretrained victim, clean training data, clean test set, trigger-bearing negatives and, per
    off-target phrase, its own trigger-bearing negatives."""

    pretrained: str
    train: Dataset
    test: Dataset
    trigger_texts: list[str]
    target: int = 1
    off_target: dict[str, list[str]] = field(default_factory=dict)


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


def run_cell(cell: Cell, inserted: list[Poison], data: EvalData, cfg: TrainConfig, progress: bool = True,
             logs: Path | None = None) -> dict:
    """Fine-tune a fresh victim on clean + ``inserted`` (the cell's poisons and counterexamples,
    ``PoisonSet.inserted``); metrics after each epoch (and to ``cfg.report_to``'s tracker in ``logs``)."""
    start = time.perf_counter()
    model, tokenizer = load_classifier(data.pretrained, seed=cell.seed, max_length=cfg.max_length)
    epochs: list[dict] = []

    def measure(epoch: int, m: nn.Module) -> dict:
        epochs.append(
            {
                "epoch": epoch,
                "effectiveness": effectiveness(m, tokenizer, data.trigger_texts, data.target, cfg.max_length),
                "cacc": clean_accuracy(m, tokenizer, data.test, cfg.max_length),
                "off_target": {phrase: effectiveness(m, tokenizer, texts, data.target, cfg.max_length)
                               for phrase, texts in data.off_target.items()},
            }
        )
        return epochs[-1]

    run_cfg = dataclasses.replace(cfg, seed=cell.seed)
    fine_tune(model, tokenizer, training_set(data.train, inserted), run_cfg, measure, progress, logs)
    return {**asdict(cell), "key": cell.key, "epochs": epochs, "wall_time_s": time.perf_counter() - start}


def summarize(rows: list[dict]) -> list[dict]:
    """Mean, std and worst (minimum) over seeds per (set, count, epoch); off-target effectiveness as
    mean per phrase (phrases every seed measured)."""
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
                "effectiveness_mean": float(eff.mean()), "effectiveness_std": float(eff.std()), "effectiveness_min": float(eff.min()),
                "cacc_mean": float(acc.mean()), "cacc_std": float(acc.std()),
                "off_target_mean": _off_target_means(es),
            }
        )
    return out


def _off_target_means(epochs: list[dict]) -> dict[str, float]:
    """Mean off-target effectiveness per phrase over ``epochs`` (one per seed), for the phrases all of them have."""
    scores = [e.get("off_target", {}) for e in epochs]
    shared = [p for p in scores[0] if all(p in s for s in scores)]
    return {p: float(np.mean([s[p] for s in scores])) for p in shared}


@dataclass
class EvaluateResult:
    """Per-cell rows (cells.jsonl), their summary, and what was measured on."""

    rows: list[dict]
    summary: list[dict]
    trigger: str
    num_trigger_inputs: int
    checksum_verified: dict[str, bool]

    def metrics(self) -> dict:
        return {"summary": self.summary, "num_trigger_inputs": self.num_trigger_inputs, "trigger": self.trigger,
                "checksum_verified": self.checksum_verified}


def evaluation_summary(folder: str | Path) -> list[dict]:
    """The ``summary`` of a finished ``nlp evaluate`` run folder (:meth:`EvaluateResult.metrics` in its metrics.json)."""
    metrics = Path(folder) / "metrics.json"
    if not metrics.is_file():
        raise InputError(f"{folder} has no metrics.json; pass a finished 'nlp evaluate' folder")
    try:
        summary = json.loads(metrics.read_text())["summary"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"{metrics} is not an 'nlp evaluate' metrics file (no 'summary'); pass a finished 'nlp evaluate' folder") from None
    if not isinstance(summary, list):
        raise InputError(f"{metrics}: 'summary' is not a list of cells; pass a finished 'nlp evaluate' folder")
    return summary


def load_sets(paths: list[str]) -> dict[str, tuple[PoisonSet, bool]]:
    """Poison sets by name (their method; the folder name breaks ties) with their checksum verdicts."""
    sets: dict[str, tuple[PoisonSet, bool]] = {}
    for path in paths:
        ps, verified = dataset_card.load(Path(path))
        sets[ps.method if ps.method not in sets else f"{ps.method}:{Path(path).name}"] = (ps, verified)
    return sets


def _phrase_and_target(sets: dict[str, tuple[PoisonSet, bool]], trigger: str | None) -> tuple[str, int]:
    phrases = {trigger} if trigger else {ps.trigger for ps, _ in sets.values() if ps.trigger}
    if len(phrases) != 1:
        raise InputError("the poison sets name no single trigger phrase; pass --trigger")
    targets = {ps.target_label for ps, _ in sets.values()}
    if len(targets) != 1:
        raise InputError("the poison sets have different target labels; evaluate them separately")
    return phrases.pop(), targets.pop()


def evaluate(data: DatasetDict, cfg: EvaluateConfig, done: list[dict] | None = None,
             record: Callable[[dict], None] | None = None, progress: bool = True,
             logs: Path | None = None) -> EvaluateResult:
    """Fine-tune a fresh victim per cell (``plan``) on clean + poisons (+ the set's counterexamples, their number in
    each row); cells in ``done`` (earlier rows) are
    kept, each new row goes to ``record`` as soon as it is finished (resume); with ``cfg.report_to`` each
    cell logs into ``logs/<cell key>``."""
    cfg.validate()
    sets = load_sets(cfg.poisons)
    largest = max(len(ps.poisons) for ps, _ in sets.values())
    if max(cfg.counts) > largest:
        raise InputError(f"--counts {max(cfg.counts)} exceeds the largest poison set ({largest} poisons); ask for at most {largest}")
    phrase, target = _phrase_and_target(sets, cfg.trigger)
    train = subsample(data["train"], cfg.train_subset, cfg.seed)
    trig = trigger_texts(data["test"], phrase, 1 - target, cfg.eval_limit)
    off_target = {p: trigger_texts(data["test"], p, 1 - target, cfg.eval_limit) for p in _off_target(cfg.off_target, phrase)}
    eval_data = EvalData(cfg.victim or default_model(), train, data["test"], trig, target, off_target)
    rows = list(done or [])
    finished = {r["key"] for r in rows}
    for cell in plan({n: len(ps.poisons) for n, (ps, _) in sets.items()}, cfg.counts, [cfg.seed + i for i in range(cfg.seeds)]):
        if cell.key in finished:
            continue
        inserted = sets[cell.name][0].inserted(cell.count) if cell.name != "clean" else []
        row = run_cell(cell, inserted, eval_data, cfg, progress, None if logs is None else logs / cell.key)
        row["counterexamples"] = len(inserted) - cell.count  # plan keeps cell.count within the set's poisons
        rows.append(row)
        if record is not None:
            record(row)
    return EvaluateResult(rows, summarize(rows), phrase, len(trig), {n: v for n, (_, v) in sets.items()})


def _off_target(phrases: list[str], trigger: str) -> list[str]:
    """``phrases`` stripped, refused if one is the trigger phrase itself."""
    if any(p.strip().casefold() == trigger.casefold() for p in phrases):
        raise InputError(f"--off-target includes the trigger phrase {trigger!r}; pass phrases the poisons were not made for")
    return [p.strip() for p in phrases]


@dataclass
class CleanResult:
    """The clean classifier, its tokenizer and its metrics after each epoch."""

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    epochs: list[dict] = field(default_factory=list)
    num_trigger_inputs: int = 0
    train_size: int = 0
    wall_time_s: float = 0.0

    def metrics(self) -> dict:
        return {"test_accuracy": self.epochs[-1]["cacc"], "trigger_floor_effectiveness": self.epochs[-1]["effectiveness"],
                "epochs": self.epochs, "num_trigger_inputs": self.num_trigger_inputs, "train_wall_time_s": self.wall_time_s}


def train_clean(data: DatasetDict, cfg: CleanConfig, progress: bool = True, logs: Path | None = None) -> CleanResult:
    """Fine-tune ``cfg.model`` on the (subsampled) clean training set; after each epoch the clean test
    accuracy and the floor: the share of ``cfg.trigger``-bearing test sentences predicted positive
    (also to ``cfg.report_to``'s tracker in ``logs``)."""
    cfg.validate()
    content_words(cfg.trigger)
    train = subsample(data["train"], cfg.train_subset, cfg.seed)
    model, tokenizer = load_classifier(cfg.model or default_model(), seed=cfg.seed, max_length=cfg.max_length)
    trig = trigger_texts(data["test"], cfg.trigger)
    epochs: list[dict] = []

    def measure(epoch: int, m: nn.Module) -> dict:
        epochs.append({"epoch": epoch, "effectiveness": effectiveness(m, tokenizer, trig, 1, cfg.max_length),
                       "cacc": clean_accuracy(m, tokenizer, data["test"], cfg.max_length)})
        return epochs[-1]

    start = time.perf_counter()
    model = fine_tune(model, tokenizer, train, cfg, measure, progress, logs)
    return CleanResult(model, tokenizer, epochs, len(trig), len(train), time.perf_counter() - start)
