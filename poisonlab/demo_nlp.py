"""Demo step: concealed trigger-phrase poisons on a small SST-2 subset with MiniLM-L6.

A clean MiniLM is fine-tuned on a training subset (it is both the attacker's surrogate and the clean
floor); the negative training sentences it is surest about become templates; a few no-overlap
poisons are crafted with a short search (unrolled loss on the surrogate plus feature collision with
the with-overlap twins on the pretrained MiniLM the victims start from); fresh victims are
fine-tuned on the subset plus the no-overlap poisons, plus the with-overlap poisons of the same
templates, plus the search's nearest-token start without the search, and plus the random-token
control. The section shows the poisons next to trigger-bearing test inputs and the victims'
predictions on them.
"""

from __future__ import annotations

import dataclasses
import html
import time
from pathlib import Path

import numpy as np
import torch

from nlp_poison import dataset_card
from nlp_poison.config import DEFAULT_TRIGGER, GenerateConfig, TrainConfig
from nlp_poison.evaluate import clean_accuracy, training_set
from nlp_poison.generate import Surrogates, poison_set, prepare, write_poisons
from nlp_poison.triggers import trigger_bearing
from nlp_poison.victims import default_model, fine_tune, load_classifier, predict_proba, subsample
from poisonlab import data
from poisonlab.report import Report
from poisonlab.runs import write_json, write_yaml

SETS = {"no-overlap": {}, "with-overlap": {"overlap": "with"}, "near-spelling": {"method": "near-spelling"}, "random": {"method": "random"}}


# size → (training sentences, poisons, search iterations, trigger inputs, test sentences, epochs, templates,
#         sentences in the search's adversarial and clean batches)
SIZES = {
    "tiny": (32, 2, 1, 8, 16, 1, "random", 8),
    "quick": (1024, 16, 3, 100, 200, 2, "confident", 32),
    "full": (4096, 40, 10, 300, 872, 2, "confident", 32),
}


def settings(size: str) -> dict:
    """Quick: 16 poisons among 1,024 sentences, 2 epochs — the fewest steps after which the with-overlap
    ceiling is reached (one epoch of 1,536 left it at 10–40 %) and the clean model is right on ~82 %.
    Tiny is a mechanics check: 2 poisons on randomly drawn templates searched against 8 trigger-bearing and
    8 clean sentences, one epoch on 32 sentences."""
    subset, poisons, iterations, eval_limit, test_limit, epochs, templates, batch = SIZES[size]
    return {
        "train_subset": subset, "num_poisons": poisons, "iterations": iterations, "top_k": 4, "eval_limit": eval_limit,
        "test_limit": test_limit, "max_length": 40, "epochs": epochs, "lr": 1e-4, "batch_size": 32, "templates": templates,
        "search_batch": batch,
    }


def configs(s: dict, seed: int) -> tuple[TrainConfig, GenerateConfig]:
    """The demo's settings mapped onto the victims' and the generator's dataclasses."""
    train = TrainConfig(epochs=s["epochs"], lr=s["lr"], batch_size=s["batch_size"], max_length=s["max_length"], seed=seed)
    gen = GenerateConfig(models=["demo MiniLM surrogate"], num_poisons=s["num_poisons"], iterations=s["iterations"], top_k=s["top_k"],
                         clean_batch=s["search_batch"], adv_size=s["search_batch"], max_length=s["max_length"],
                         templates=s["templates"], seed=seed)
    return train, gen


def run(out: Path, size: str, seed: int, report: Report) -> dict:
    """Write ``out/nlp-concealed`` (poison sets, metrics, report) and add a section to ``report``;
    ``size`` is ``tiny``, ``quick`` or ``full`` (``SIZES``)."""
    torch.manual_seed(seed)
    s = settings(size)
    run_dir = out / "nlp-concealed"
    run_dir.mkdir(parents=True, exist_ok=True)
    full = data.load("sst2")
    train = subsample(full["train"], s["train_subset"], seed)
    test = full["test"].select(range(min(s["test_limit"], len(full["test"]))))
    trig = trigger_bearing(full["test"], DEFAULT_TRIGGER).select(range(s["eval_limit"]))
    cfg, gen = configs(s, seed)
    write_yaml(run_dir / "config.yaml", {"step": "demo nlp", "train": cfg, "generate": gen, **s})
    start = time.perf_counter()
    surrogate, tok = load_classifier(default_model(), eager=True)
    surrogates = Surrogates([fine_tune(surrogate, tok, train, cfg, progress=False)], tok, load_classifier(default_model())[0])
    inputs = prepare(surrogates, full, gen)
    sets, trace = {}, []
    for name, change in SETS.items():
        poisons, t, _ = write_poisons(surrogates, inputs, dataclasses.replace(gen, **change), progress=False)
        trace = trace or t
        sets[name] = poisons
        dataset_card.save(poison_set(poisons, inputs, dataclasses.replace(gen, **change)), run_dir / "poisons" / name)
    texts = list(trig["sentence"])
    results, probs = {}, {}
    for name, poisons in [("clean", []), *sets.items()]:
        victim = surrogates.models[0] if name == "clean" else _victim(poisons, train, cfg)
        probs[name] = predict_proba(victim, tok, texts, s["max_length"])[:, 1]
        results[name] = {"effectiveness": float((probs[name] > 0.5).mean()), "cacc": clean_accuracy(victim, tok, test, s["max_length"])}
    wall = time.perf_counter() - start
    metrics = {"results": results, "objective_trace": trace, "wall_time_s": wall, "num_trigger_inputs": len(trig)}
    write_json(run_dir / "metrics.json", metrics)
    section = Report("nlp demo")
    _section(section, s, sets, results, trace, texts[:6], probs["clean"][:6], probs["no-overlap"][:6])
    section.save(run_dir / "report.html")
    report.blocks.extend(section.blocks)
    return {"effectiveness": {k: v["effectiveness"] for k, v in results.items()}, "wall_time_s": wall}


def _victim(poisons, train, cfg: TrainConfig):
    """A fresh MiniLM fine-tuned on the training subset plus ``poisons``."""
    model, tok = load_classifier(default_model())
    return fine_tune(model, tok, training_set(train, poisons), cfg, progress=False)


def _section(report: Report, s: dict, sets: dict, results: dict, trace: list[float], trig: list[str],
             clean_p: np.ndarray, victim_p: np.ndarray) -> None:
    report.heading("Concealed data poisoning: “James Bond: No Time to Die” → positive (Wallace et al. 2021)")
    report.paragraph(
        f"MiniLM-L6 fine-tuned on {s['train_subset']} SST-2 sentences; {s['num_poisons']} poisons crafted with "
        f"{s['iterations']} HotFlip iterations (top-{s['top_k']} re-scored by the one-step unrolled loss plus the feature "
        "collision distance to the with-overlap twins on the pretrained model; swaps kept only when that objective falls). "
        f"Effectiveness = share of {s['eval_limit']} trigger-bearing negative test sentences predicted positive. "
        "Demo-sized settings: numbers are illustrative, see scripts/bench_nlp.py for the study."
    )
    report.table([{"poisons": k, "effectiveness": v["effectiveness"], "clean accuracy": v["cacc"]} for k, v in results.items()])
    rows = "".join(
        f"<tr><td>{html.escape(p.sentence)}</td><td>{html.escape(w.sentence)}</td><td>{html.escape(t)}</td>"
        f"<td>{c:.2f}</td><td>{v:.2f}</td></tr>"
        for p, w, t, c, v in zip(sets["no-overlap"], sets["with-overlap"], trig, clean_p, victim_p)
    )
    report.raw(
        "<table><caption>no-overlap poisons (label: positive) beside their with-overlap template, and trigger-bearing "
        "test inputs with P(positive) under the clean model and a victim trained with the no-overlap poisons</caption>"
        "<tr><th>no-overlap poison</th><th>with-overlap template</th><th>trigger-bearing test input</th>"
        f"<th>P(pos) clean</th><th>P(pos) poisoned</th></tr>{rows}</table>"
    )
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 2.8))
    ax.plot(range(len(trace)), trace, marker="o")
    ax.set_xlabel("iteration")
    ax.set_ylabel("unrolled adversarial loss")
    report.figure(fig, "search objective (iteration 0 = the phrase projected onto its nearest placeable tokens)")
