"""``poisonlab nlp``: concealed trigger-phrase poisoning of sentiment classifiers (Wallace et al. 2021).

``train`` fine-tunes a clean classifier (surrogate / clean floor), ``generate`` writes a shareable
poison set, ``evaluate`` fine-tunes fresh victims on clean + poisons and measures effectiveness and
CACC (resumable, one JSON row per finished cell), ``defend`` ranks the poisoned training set with the
paper's defenses.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import click
import numpy as np
import torch

from labcore.errors import InputError
from nlp_poison import dataset_card
from nlp_poison.overlap import check_no_overlap, content_words
from nlp_poison.triggers import trigger_bearing
from nlp_poison.victims import LABELS, TrainConfig, default_model
from poisonlab import data as datasets_registry
from poisonlab.report import Report
from poisonlab.runs import append_jsonl, read_jsonl, staged_output, staging_path, write_json, write_yaml

DEFAULT_TRIGGER = "James Bond: No Time to Die"


def add_generation(report: Report, ps, trace: list[float]) -> None:
    """Example poisons and the unrolled objective per iteration."""
    report.heading(f"{len(ps.poisons)} {ps.method} poisons for “{ps.trigger}” → {LABELS[ps.target_label]}")
    report.table([{"sentence": p.sentence, "label": LABELS[p.label], "type": p.poison_type} for p in ps.poisons[:12]],
                 "first poisons (dirty-label: they read negative but carry the target label)")
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
    report.table([r for r in summary if r["epoch"] == last], f"after epoch {last}")
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


def load_sst2(path: str | None, train_subset: int | None, seed: int):
    """SST-2 from the registry, the training split optionally subsampled (fixed seed)."""
    ds = datasets_registry.load("sst2", path)
    if train_subset is not None:
        if not 1 <= train_subset <= len(ds["train"]):
            raise InputError(f"--train-subset must be between 1 and {len(ds['train'])}")
        ds["train"] = ds["train"].shuffle(seed=seed).select(range(train_subset))
    return ds


def label_index(name: str) -> int:
    return LABELS.index(name)


def parse_counts(text: str) -> list[int]:
    try:
        counts = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise InputError(f"--counts {text!r} must be comma-separated integers, e.g. 1,10,50") from None
    if not counts or min(counts) < 1:
        raise InputError("--counts needs at least one positive integer")
    return counts


def _train_options(f):
    for opt in reversed([
        click.option("--epochs", type=int, default=1, show_default=True),
        click.option("--lr", type=float, default=5e-5, show_default=True),
        click.option("--batch-size", type=int, default=32, show_default=True),
        click.option("--max-length", type=int, default=64, show_default=True),
        click.option("--train-subset", type=int, default=None, help="Use this many training sentences (seeded)."),
        click.option("--data-path", default=None, help="Folder with SST-2 train/dev/test.txt (default: registry)."),
        click.option("--bf16", is_flag=True, help="Train under bfloat16 autocast (fast on CPUs with AVX512-BF16)."),
        click.option("--seed", type=int, default=0, show_default=True),
    ]):
        f = opt(f)
    return f


@click.group()
def nlp() -> None:
    """Concealed data poisoning of sentiment models (trigger phrase → target label)."""


@nlp.command("train")
@click.option("--data", "data_name", type=click.Choice(["sst2"]), default="sst2", show_default=True)
@click.option("--model", default=None, help="Hub id or local folder (default: packaged MiniLM-L6).")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--lora", is_flag=True, help="Train peft LoRA adapters instead of all weights.")
@click.option("--trigger", default=DEFAULT_TRIGGER, show_default=True, help="Phrase for the clean-model floor.")
@_train_options
def train_cmd(data_name, model, out, lora, trigger, epochs, lr, batch_size, max_length, train_subset, data_path, bf16, seed):
    """Fine-tune a clean classifier (the attacker's surrogate and the clean baseline)."""
    from nlp_poison.evaluate import clean_accuracy, effectiveness
    from nlp_poison.victims import fine_tune, load_classifier, save_classifier

    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, lora=lora, bf16=bf16, seed=seed)
    cfg.validate()
    content_words(trigger)
    model = model or default_model()
    ds = load_sst2(data_path, train_subset, seed)
    clf, tok = load_classifier(model)
    with staged_output(out) as stage:
        write_yaml(stage / "config.yaml", {"command": "nlp train", "model": model, "trigger": trigger, "train_size": len(ds["train"]), **asdict(cfg)})
        trig = list(trigger_bearing(ds["test"], trigger)["sentence"])
        epochs_seen: list[dict] = []
        measure = lambda e, m: epochs_seen.append(
            {"epoch": e, "effectiveness": effectiveness(m, tok, trig, 1, max_length), "cacc": clean_accuracy(m, tok, ds["test"], max_length)}
        )
        start = time.perf_counter()
        clf = fine_tune(clf, tok, ds["train"], cfg, measure)
        wall = time.perf_counter() - start
        save_classifier(clf, tok, stage / "model")
        metrics = {
            "test_accuracy": epochs_seen[-1]["cacc"],
            "trigger_floor_effectiveness": epochs_seen[-1]["effectiveness"],
            "epochs": epochs_seen,
            "num_trigger_inputs": len(trig),
            "train_wall_time_s": wall,
        }
        write_json(stage / "metrics.json", metrics)
        report = Report("nlp train")
        report.table([metrics], "clean classifier")
        report.save(stage / "report.html")
    click.echo(f"{out}: test accuracy {metrics['test_accuracy']:.4f}, floor {metrics['trigger_floor_effectiveness']:.4f}")


@nlp.command("generate")
@click.option("--model", "models", multiple=True, required=True,
              help="Surrogate classifier folder (e.g. from 'nlp train') or Hub id; repeat for an ensemble whose mean "
                   "unrolled loss the search lowers (same tokenizer; the first gives the tokens' embeddings).")
@click.option("--trigger", default=DEFAULT_TRIGGER, show_default=True)
@click.option("--target", type=click.Choice(LABELS), default="positive", show_default=True)
@click.option("--num-poisons", type=int, default=50, show_default=True)
@click.option("--overlap", type=click.Choice(["none", "with"]), default="none", show_default=True)
@click.option("--method", type=click.Choice(["gradient", "random", "nearest"]), default="gradient", show_default=True,
              help="For --overlap none: the bilevel HotFlip search, the random-token control, or the phrase projected onto "
                   "its nearest placeable tokens (the search's start, without the search).")
@click.option("--init", type=click.Choice(["nearest", "random"]), default="nearest", show_default=True,
              help="Where the search starts: the nearest-token projection of the with-overlap poisons, or random tokens.")
@click.option("--iterations", type=int, default=14, show_default=True, help="Search iterations (14: two passes over a 7-token phrase).")
@click.option("--top-k", type=int, default=8, show_default=True)
@click.option("--eta", type=float, default=0.05, show_default=True, help="Unrolled SGD step.")
@click.option("--scope-layers", type=int, default=None, help="Top encoder layers in the unrolled scope besides the head (default: all).")
@click.option("--clean-batch", type=int, default=256, show_default=True, help="Clean sentences in the unrolled batch and the Adam estimate.")
@click.option("--adam/--sgd", default=True, show_default=True,
              help="Precondition the unrolled step like Adam (1/sqrt of clean minibatch gradient second moments), or plain SGD.")
@click.option("--contrast/--cross-entropy", default=True, show_default=True,
              help="L_adv: the paired margin gap between each adversarial sentence without and with the phrase, or the "
                   "cross-entropy towards the target plus that of the phrase-free twins towards their label.")
@click.option("--shared/--per-poison", default=True, show_default=True,
              help="One edit for all poisons per iteration (universal, re-scored by the exact unrolled loss), or one per poison.")
@click.option("--neighbours", type=int, default=5, show_default=True,
              help="Each edited token may only become one of this many nearest placeable tokens of the phrase sub-token it "
                   "replaces (0: the whole placeable vocabulary).")
@click.option("--collision", type=float, default=5.0, show_default=True,
              help="Weight of the feature-collision distance to the with-overlap twins on the victims' pretrained encoder "
                   "(--victim) in the search objective (0: the unrolled loss alone).")
@click.option("--victim", default=None, help="Pretrained model victims fine-tune from, for the collision term (default: packaged MiniLM-L6).")
@click.option("--templates", "template_order", type=click.Choice(["confident", "random"]), default="confident", show_default=True,
              help="Which source-label training sentences become templates: those the surrogates classify most confidently "
                   "(the largest loss once relabelled), or a seeded random draw.")
@click.option("--adv-size", type=int, default=64, show_default=True, help="Trigger-bearing validation negatives in L_adv.")
@click.option("--max-length", type=int, default=64, show_default=True)
@click.option("--data-path", default=None)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
def generate_cmd(models, trigger, target, num_poisons, overlap, method, init, iterations, top_k, eta, scope_layers, clean_batch, adam,
                 contrast, neighbours, shared, collision, victim, template_order, adv_size, max_length, data_path, out, seed):
    """Write a poison set (HF dataset + JSONL + dataset card) into OUT."""
    from nlp_poison.baselines import make_templates, nearest_control, random_control, source_confidence, with_overlap
    from nlp_poison.concealed import ConcealedConfig, craft
    from nlp_poison.overlap import banned_token_ids, placeable_ids
    from nlp_poison.poison_set import PoisonSet
    from nlp_poison.victims import load_classifier

    if num_poisons < 1 or adv_size < 1 or clean_batch < 1 or neighbours < 0:
        raise InputError("--num-poisons, --adv-size and --clean-batch must be >= 1 and --neighbours >= 0")
    cfg = ConcealedConfig(iterations=iterations, top_k=top_k, eta=eta, scope_layers=scope_layers, clean_batch=clean_batch,
                          adam=adam, init=init, contrast=contrast, neighbours=neighbours or None, shared=shared, collision=collision,
                          target=label_index(target), seed=seed)
    cfg.validate()
    content_words(trigger)
    ds = load_sst2(data_path, None, seed)
    surrogates = [load_classifier(m, eager=True) for m in models]
    tok = surrogates[0][1]
    for m, (_, other) in zip(models[1:], surrogates[1:]):
        if other.get_vocab() != tok.get_vocab():
            raise InputError(f"surrogate {m} has another vocabulary than {models[0]}; an ensemble needs one tokenizer")
    victim = victim or default_model()
    pretrained = None
    if overlap == "none" and method == "gradient" and cfg.collision > 0:
        pretrained, victim_tok = load_classifier(victim)
        if victim_tok.get_vocab() != tok.get_vocab():
            raise InputError(f"victim {victim} has another vocabulary than {models[0]}; pass --victim with the surrogates' tokenizer or --collision 0")
    model = ", ".join(models)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    rng = np.random.default_rng(seed)
    source = 1 - cfg.target
    with staged_output(out) as stage:
        confidence = source_confidence([m for m, _ in surrogates], tok, source, max_length) if template_order == "confident" else None
        templates = make_templates(ds["train"], trigger, num_poisons, tok, seed, source, max_length, confidence=confidence)
        used = {t.source_idx for t in templates}
        clean_idx = [int(i) for i in rng.permutation(len(ds["train"])) if int(i) not in used][:clean_batch]
        clean = ds["train"].select(clean_idx)
        adv = trigger_bearing(ds["validation"], trigger, source)
        adv = adv.select(sorted(rng.permutation(len(adv))[:adv_size].tolist()))
        start = time.perf_counter()
        trace: list[float] = []
        distances: list[float] = []
        if overlap == "with":
            poisons, name = with_overlap(templates, tok, cfg.target), "with-overlap"
        else:
            placeable = placeable_ids(tok, banned_token_ids(tok, trigger))
            if method == "random":
                poisons, name = random_control(templates, tok, placeable, trigger, cfg.target, seed), "random"
            elif method == "nearest":
                emb = surrogates[0][0].get_input_embeddings().weight
                poisons, name = nearest_control(templates, tok, placeable, trigger, cfg.target, emb), "nearest"
            else:
                result = craft([m for m, _ in surrogates], tok, templates, trigger, placeable, list(adv["sentence"]), list(adv["original"]),
                               list(clean["sentence"]), list(clean["label"]), cfg, pretrained)
                poisons, name, trace, distances = result.poisons, "concealed", result.trace, result.collision_trace
            check_no_overlap([p.sentence for p in poisons], trigger)
        wall = time.perf_counter() - start
        settings = {"overlap": overlap, "method": method, **asdict(cfg), "templates": template_order, "adv_size": len(adv),
                    "max_length": max_length, "victim": victim}
        ps = PoisonSet(poisons, trigger, cfg.target, name, model, seed, settings)
        dataset_card.save(ps, stage)
        write_yaml(stage / "config.yaml", {"command": "nlp generate", "model": model, "trigger": trigger, "target": target,
                                            "num_poisons": num_poisons, **settings})
        metrics = {"num_poisons": len(poisons), "method": name, "wall_time_s": wall, "objective_trace": trace, "collision_trace": distances,
                   "overlap_words": 0 if overlap == "none" else len(content_words(trigger)) * len(poisons)}
        write_json(stage / "metrics.json", metrics)
        report = Report(f"nlp generate: {name}")
        add_generation(report, ps, trace)
        report.save(stage / "report.html")
    click.echo(f"{out}: {len(poisons)} {name} poisons in {wall:.1f}s")


@nlp.command("evaluate")
@click.option("--poisons", "poison_paths", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Poison-set folder or JSONL (repeatable).")
@click.option("--victim", default=None, help="Pretrained model victims start from (default: packaged MiniLM-L6).")
@click.option("--trigger", default=None, help="Trigger phrase (required for a JSONL without a card).")
@click.option("--seeds", type=int, default=3, show_default=True, help="Number of victim seeds (seed, seed+1, ...).")
@click.option("--counts", default="1,10,50", show_default=True, help="Poison counts to sweep.")
@click.option("--eval-limit", type=int, default=None, help="Use at most this many trigger-bearing negatives.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted evaluation (finished cells are kept).")
@_train_options
def evaluate_cmd(poison_paths, victim, trigger, seeds, counts, eval_limit, out, resume, epochs, lr, batch_size, max_length,
                 train_subset, data_path, bf16, seed):
    """Fine-tune fresh victims on clean + poisons; effectiveness, CACC, sweeps over counts and epochs."""
    from nlp_poison.evaluate import EvalData, plan, run_cell, summarize

    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, bf16=bf16, seed=seed)
    cfg.validate()
    if seeds < 1:
        raise InputError("--seeds must be >= 1")
    sets = {}
    for path in poison_paths:
        ps, verified = dataset_card.load(path)
        name = ps.method if ps.method not in sets else f"{ps.method}:{Path(path).name}"
        sets[name] = (ps, verified)
    phrases = {trigger} if trigger else {ps.trigger for ps, _ in sets.values() if ps.trigger}
    if len(phrases) != 1:
        raise InputError("the poison sets name no single trigger phrase; pass --trigger")
    phrase = phrases.pop()
    targets = {ps.target_label for ps, _ in sets.values()}
    if len(targets) != 1:
        raise InputError("the poison sets have different target labels; evaluate them separately")
    target = targets.pop()
    ds = load_sst2(data_path, train_subset, seed)
    trig = trigger_bearing(ds["test"], phrase, 1 - target)
    if eval_limit is not None:
        trig = trig.select(range(min(eval_limit, len(trig))))
    data = EvalData(victim or default_model(), ds["train"], ds["test"], list(trig["sentence"]), target)
    cells = plan({n: len(ps.poisons) for n, (ps, _) in sets.items()}, parse_counts(counts), [seed + i for i in range(seeds)])
    with staged_output(out, resume=resume and staging_path(out).exists()) as stage:
        write_yaml(stage / "config.yaml", {"command": "nlp evaluate", "victim": data.pretrained, "trigger": phrase,
                                            "poisons": {n: str(p) for n, p in zip(sets, poison_paths)}, "seeds": seeds,
                                            "counts": counts, "train_size": len(ds["train"]), "num_trigger_inputs": len(trig),
                                            **asdict(cfg)})
        done = {r["key"] for r in read_jsonl(stage / "cells.jsonl")}
        for cell in cells:
            if cell.key in done:
                continue
            poisons = sets[cell.name][0].poisons if cell.name != "clean" else []
            click.echo(f"cell {cell.key}")
            append_jsonl(stage / "cells.jsonl", run_cell(cell, poisons, data, cfg))
        rows = read_jsonl(stage / "cells.jsonl")
        summary = summarize(rows)
        write_json(stage / "metrics.json", {"summary": summary, "num_trigger_inputs": len(trig), "trigger": phrase,
                                            "checksum_verified": {n: v for n, (_, v) in sets.items()}})
        report = Report("nlp evaluate")
        add_evaluation(report, summary, len(trig))
        report.save(stage / "report.html")
    final = [r for r in summary if r["epoch"] == epochs]
    for r in final:
        click.echo(f"{r['poisons']:>14} n={r['count']:<3} effectiveness {r['effectiveness_mean']:.3f}±{r['effectiveness_std']:.3f} "
                   f"CACC {r['cacc_mean']:.3f}±{r['cacc_std']:.3f}")


@nlp.command("defend")
@click.option("--poisons", "poison_path", required=True, type=click.Path(path_type=Path))
@click.option("--victim", required=True, help="Classifier whose embeddings rank the training set (e.g. a poisoned victim).")
@click.option("--lm", default=None, help="Local causal LM folder for perplexity (default: a cross-fitted bigram model of the training set).")
@click.option("--evaluation", type=click.Path(path_type=Path), default=None, help="An 'nlp evaluate' folder for the early-stopping table.")
@click.option("--trigger", default=None)
@click.option("--max-length", type=int, default=64, show_default=True)
@click.option("--train-subset", type=int, default=None)
@click.option("--data-path", default=None)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
def defend_cmd(poison_path, victim, lm, evaluation, trigger, max_length, train_subset, data_path, out, seed):
    """Perplexity filtering, embedding-distance ranking and early stopping: poisons found vs inspected."""
    from nlp_poison.defenses import (
        causal_lm_perplexity, cross_fitted_perplexity, distance_ranking, early_stopping, found_curve, inspected_to_find,
        perplexity_ranking, sentence_embeddings,
    )
    from nlp_poison.evaluate import training_set
    from nlp_poison.victims import load_classifier

    ps, _ = dataset_card.load(poison_path)
    phrase = trigger or ps.trigger
    if not phrase:
        raise InputError("the poison set names no trigger phrase; pass --trigger")
    evaluation_summary = None
    if evaluation is not None:
        if not (Path(evaluation) / "metrics.json").is_file():
            raise InputError(f"{evaluation} has no metrics.json; pass a finished 'nlp evaluate' folder")
        import json

        evaluation_summary = json.loads((Path(evaluation) / "metrics.json").read_text())["summary"]
    ds = load_sst2(data_path, train_subset, seed)
    clf, tok = load_classifier(victim)
    train = training_set(ds["train"], ps.poisons)
    texts = list(train["sentence"])
    is_poison = np.arange(len(texts)) >= len(ds["train"])
    with staged_output(out) as stage:
        if lm is None:
            ppl = cross_fitted_perplexity(texts, seed=seed)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            ppl = causal_lm_perplexity(AutoModelForCausalLM.from_pretrained(lm), AutoTokenizer.from_pretrained(lm), texts)
        trig = list(trigger_bearing(ds["validation"], phrase, 1 - ps.target_label)["sentence"])
        order_d, _ = distance_ranking(sentence_embeddings(clf, tok, texts, max_length), sentence_embeddings(clf, tok, trig, max_length))
        curves = {"perplexity": found_curve(perplexity_ranking(ppl), is_poison), "embedding distance": found_curve(order_d, is_poison)}
        metrics = {
            name: {f"inspected_for_{int(f * 100)}pct": inspected_to_find(c, f) for f in (0.5, 0.9, 1.0)} | {"found_in_first_100": int(c[min(99, len(c) - 1)])}
            for name, c in curves.items()
        }
        metrics["num_training"] = len(texts)
        metrics["num_poisons"] = int(is_poison.sum())
        if evaluation_summary is not None:
            metrics["early_stopping"] = early_stopping(evaluation_summary, ps.method, len(ps.poisons))
        write_yaml(stage / "config.yaml", {"command": "nlp defend", "poisons": str(poison_path), "victim": victim, "lm": lm or "bigram",
                                            "trigger": phrase, "train_size": len(ds["train"]), "seed": seed})
        write_json(stage / "metrics.json", metrics)
        report = Report("nlp defend")
        add_defense_curves(report, curves, metrics.get("early_stopping"))
        report.save(stage / "report.html")
    click.echo(f"{out}: " + ", ".join(f"{n}: {metrics[n]['inspected_for_50pct']} inspected for half the poisons" for n in curves))


@nlp.command("fed")
@click.option("--poisons", "poison_path", required=True, type=click.Path(path_type=Path))
@click.option("--model", default=None, help="Pretrained model the clients adapt with LoRA (default: packaged MiniLM-L6).")
@click.option("--clients", type=int, default=10, show_default=True)
@click.option("--per-round", type=int, default=5, show_default=True)
@click.option("--rounds", type=int, default=5, show_default=True)
@click.option("--aggregator", default="mean", show_default=True, help="Any fedharness aggregator (mean, median, krum, ...).")
@click.option("--local-epochs", type=int, default=1, show_default=True)
@click.option("--local-lr", type=float, default=0.05, show_default=True)
@click.option("--lora-r", type=int, default=8, show_default=True)
@click.option("--eval-limit", type=int, default=200, show_default=True)
@click.option("--max-length", type=int, default=48, show_default=True)
@click.option("--train-subset", type=int, default=2000, show_default=True)
@click.option("--data-path", default=None)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
def fed_cmd(poison_path, model, clients, per_round, rounds, aggregator, local_epochs, local_lr, lora_r, eval_limit, max_length,
            train_subset, data_path, out, seed):
    """Federated LoRA fine-tuning with one malicious client holding the poisons (client 0, every round)."""
    from fedharness.config import AggregatorConfig, AttackConfig, EngineConfig, ExperimentConfig, FederationConfig
    from fedharness.local_training import LocalConfig
    from fedharness.simulation import Simulation
    from nlp_poison.task import TextClassificationTask

    ps, _ = dataset_card.load(poison_path)
    if not ps.trigger:
        raise InputError("the poison set names no trigger phrase; use a poison-set folder with its card")
    cfg = ExperimentConfig(
        seed=seed,
        federation=FederationConfig(num_clients=clients, clients_per_round=per_round, rounds=rounds),
        local=LocalConfig(epochs=local_epochs, lr=local_lr, batch_size=16),
        attack=AttackConfig(name="backdoor", num_attackers=1, every=1,
                            params={"epochs": local_epochs, "lr": local_lr, "batch_size": 16}),
        aggregator=AggregatorConfig(name=aggregator),
        engine=EngineConfig(vectorize=False),
    )
    cfg.validate()
    ds = load_sst2(data_path, train_subset, seed)
    trig = trigger_bearing(ds["test"], ps.trigger, 1 - ps.target_label)
    test = ds["test"].select(range(min(eval_limit, len(ds["test"]))))
    task = TextClassificationTask(model or default_model(), ds["train"], test, list(trig["sentence"][:eval_limit]),
                                  ps.sentences(), ps.target_label, max_length, lora_r, 2 * lora_r)
    with staged_output(out) as stage:
        write_yaml(stage / "config.yaml", {"command": "nlp fed", "poisons": str(poison_path), "model": task.pretrained,
                                            "experiment": cfg, "train_size": len(ds["train"]), "eval_limit": eval_limit})
        sim = Simulation(cfg, task)
        g = sim.initial_global()
        records = []
        for g, record in sim.rounds(g):
            records.append(record)
            append_jsonl(stage / "rounds.jsonl", record)
            click.echo(f"round {record['round']}: CACC {record['main_accuracy']:.3f}, effectiveness {record['attack_success_rate']:.3f}")
        write_json(stage / "metrics.json", {"final_main_accuracy": records[-1]["main_accuracy"],
                                            "final_effectiveness": records[-1]["attack_success_rate"],
                                            "federated_parameters": int(g.numel())})
        report = Report("nlp fed")
        report.heading(f"Federated LoRA, {aggregator}: one client holds {len(ps.poisons)} {ps.method} poisons")
        report.table([{"round": r["round"], "CACC": r["main_accuracy"], "effectiveness": r["attack_success_rate"]} for r in records])
        report.save(stage / "report.html")
