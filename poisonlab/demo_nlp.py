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

import html
import time
from pathlib import Path

import numpy as np
import torch

from nlp_poison import dataset_card
from nlp_poison.baselines import make_templates, nearest_control, random_control, source_confidence, with_overlap
from nlp_poison.concealed import ConcealedConfig, craft
from nlp_poison.evaluate import clean_accuracy, training_set
from nlp_poison.overlap import banned_token_ids, check_no_overlap, placeable_ids
from nlp_poison.poison_set import PoisonSet
from nlp_poison.triggers import trigger_bearing
from nlp_poison.victims import TrainConfig, default_model, fine_tune, load_classifier, predict_proba
from poisonlab.commands.nlp import DEFAULT_TRIGGER, load_sst2
from poisonlab.report import Report
from poisonlab.runs import write_json, write_yaml


def settings(quick: bool) -> dict:
    """Quick: 16 poisons among 1,024 sentences, 2 epochs — the fewest steps after which the with-overlap
    ceiling is reached (one epoch of 1,536 left it at 10–40 %) and the clean model is right on ~82 %."""
    return {
        "train_subset": 1024 if quick else 4096, "num_poisons": 16 if quick else 40, "iterations": 3 if quick else 10,
        "top_k": 4, "eval_limit": 100 if quick else 300, "test_limit": 200 if quick else 872, "max_length": 40,
        "epochs": 2, "lr": 1e-4, "batch_size": 32,
    }


def run(out: Path, quick: bool, seed: int, report: Report) -> dict:
    """Write ``out/nlp-concealed`` (poison sets, metrics, report) and add a section to ``report``."""
    torch.manual_seed(seed)
    s = settings(quick)
    run_dir = out / "nlp-concealed"
    run_dir.mkdir(parents=True, exist_ok=True)
    ds = load_sst2(None, s["train_subset"], seed)
    test = ds["test"].select(range(min(s["test_limit"], len(ds["test"]))))
    trig = trigger_bearing(ds["test"], DEFAULT_TRIGGER).select(range(s["eval_limit"]))
    cfg = TrainConfig(epochs=s["epochs"], lr=s["lr"], batch_size=s["batch_size"], max_length=s["max_length"], seed=seed)
    write_yaml(run_dir / "config.yaml", {"step": "demo nlp", "trigger": DEFAULT_TRIGGER, "seed": seed, **s})
    start = time.perf_counter()
    surrogate, tok = load_classifier(default_model(), eager=True)
    surrogate = fine_tune(surrogate, tok, ds["train"], cfg, progress=False)
    full = load_sst2(None, None, seed)
    templates = make_templates(full["train"], DEFAULT_TRIGGER, s["num_poisons"], tok, seed, 0, s["max_length"],
                               confidence=source_confidence([surrogate], tok, 0, s["max_length"]))
    adv = trigger_bearing(full["validation"], DEFAULT_TRIGGER).select(range(32))
    clean = full["train"].select([i for i in range(400) if i not in {t.source_idx for t in templates}][:32])
    placeable = placeable_ids(tok, banned_token_ids(tok, DEFAULT_TRIGGER))
    crafted = craft(surrogate, tok, templates, DEFAULT_TRIGGER, placeable, list(adv["sentence"]), list(adv["original"]),
                    list(clean["sentence"]), list(clean["label"]),
                    ConcealedConfig(iterations=s["iterations"], top_k=s["top_k"], clean_batch=32, seed=seed),
                    pretrained=load_classifier(default_model())[0], progress=False)
    check_no_overlap([p.sentence for p in crafted.poisons], DEFAULT_TRIGGER)
    sets = {
        "no-overlap": crafted.poisons,
        "with-overlap": with_overlap(templates, tok, 1),
        "nearest": nearest_control(templates, tok, placeable, DEFAULT_TRIGGER, 1, surrogate.get_input_embeddings().weight),
        "random": random_control(templates, tok, placeable, DEFAULT_TRIGGER, 1, seed),
    }
    for name, poisons in sets.items():
        dataset_card.save(PoisonSet(poisons, DEFAULT_TRIGGER, 1, name, "demo MiniLM surrogate", seed, s), run_dir / "poisons" / name)
    texts = list(trig["sentence"])
    results, probs = {}, {}
    for name, poisons in [("clean", []), *sets.items()]:
        victim = surrogate if name == "clean" else _victim(poisons, ds["train"], cfg)
        probs[name] = predict_proba(victim, tok, texts, s["max_length"])[:, 1]
        results[name] = {"effectiveness": float((probs[name] > 0.5).mean()), "cacc": clean_accuracy(victim, tok, test, s["max_length"])}
    wall = time.perf_counter() - start
    metrics = {"results": results, "objective_trace": crafted.trace, "wall_time_s": wall, "num_trigger_inputs": len(trig)}
    write_json(run_dir / "metrics.json", metrics)
    section = Report("nlp demo")
    _section(section, s, sets, results, crafted.trace, texts[:6], probs["clean"][:6], probs["no-overlap"][:6])
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
