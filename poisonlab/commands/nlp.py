"""``poisonlab nlp``: concealed trigger-phrase poisoning of sentiment classifiers (Wallace et al. 2021).

``train`` fine-tunes a clean classifier (surrogate / clean floor), ``generate`` writes a shareable
poison set, ``evaluate`` fine-tunes fresh victims on clean + poisons and measures effectiveness and
CACC (resumable, one JSON row per finished cell), ``defend`` ranks the poisoned training set with the
paper's defenses, ``fed`` runs federated LoRA fine-tuning with a poisoning client. Each command maps
its options onto one ``nlp_poison.config`` dataclass (defaults live there; ``--config FILE.yaml``
loads one, a run's ``config.yaml`` reruns it) and calls the procedure's entry point.
"""

from __future__ import annotations

from pathlib import Path

import click

from labcore.errors import InputError
from nlp_poison.config import LABELS, LAYOUTS, SST2_FED, CleanConfig, DefendConfig, EvaluateConfig, GenerateConfig
from poisonlab.config import config_command

PATH = click.Path(path_type=Path)
TRAIN_OPTIONS = [
    click.option("--epochs", type=int, default=None, help="Fine-tuning epochs."),
    click.option("--lr", type=float, default=None, help="AdamW learning rate."),
    click.option("--batch-size", type=int, default=None),
    click.option("--max-length", type=int, default=None, help="Tokens per sentence."),
    click.option("--train-subset", type=int, default=None, help="Use this many training sentences (seeded)."),
    click.option("--data-path", default=None, help="SST-2-style folder or one 'LABEL SENTENCE' file (default: registry SST-2)."),
    click.option("--bf16", is_flag=True, default=None, help="Train under bfloat16 autocast (fast on CPUs with AVX512-BF16)."),
    click.option("--report-to", default=None, help="accelerate tracker (e.g. tensorboard): loss per step, metrics per epoch in <out>/logs."),
    click.option("--seed", type=int, default=None),
]


def _train_options(f):
    for opt in reversed(TRAIN_OPTIONS):
        f = opt(f)
    return f


def _label(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else LABELS.index(value)


def _counts(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    try:
        return None if value is None else [int(c) for c in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r} must be comma-separated integers, e.g. 1,10,50") from None


def _sst2(path: str | None):
    from poisonlab import data

    return data.load_sentiment(path)


@click.group()
def nlp() -> None:
    """Concealed data poisoning of sentiment models (trigger phrase → target label). Defaults: nlp_poison/config.py."""


@nlp.command("train")
@config_command(CleanConfig, keep=["out"])
@click.option("--model", default=None, help="Hub id or local folder (default: packaged MiniLM-L6).")
@click.option("--out", type=PATH, required=True)
@click.option("--lora/--full", default=None, help="Train peft LoRA adapters instead of all weights.")
@click.option("--trigger", default=None, help="Phrase for the clean-model floor.")
@_train_options
def train_cmd(cfg: CleanConfig, out: Path) -> None:
    """Fine-tune a clean classifier (the attacker's surrogate and the clean baseline)."""
    from nlp_poison.evaluate import train_clean
    from nlp_poison.victims import save_classifier
    from poisonlab.nlp_report import save_run
    from poisonlab.runs import staged_output

    ds = _sst2(cfg.data_path)
    with staged_output(out) as stage:
        result = train_clean(ds, cfg, logs=stage / "logs")
        save_classifier(result.model, result.tokenizer, stage / "model")
        metrics = result.metrics()
        save_run(stage, cfg, metrics, "nlp train", lambda r: r.table([metrics], "clean classifier"))
    click.echo(f"{out}: test accuracy {metrics['test_accuracy']:.4f}, floor {metrics['trigger_floor_effectiveness']:.4f}")


@nlp.command("generate")
@config_command(GenerateConfig, keep=["out"])
@click.option("--model", "models", multiple=True, help="Surrogate classifier folder (e.g. from 'nlp train') or Hub id; repeat for an "
              "ensemble whose mean unrolled loss the search lowers (same tokenizer; the first gives the tokens' embeddings).")
@click.option("--trigger", default=None)
@click.option("--target", type=click.Choice(LABELS), default=None, callback=_label, help="Target label (1: positive).")
@click.option("--num-poisons", type=int, default=None)
@click.option("--overlap", type=click.Choice(["none", "with"]), default=None)
@click.option("--method", type=click.Choice(["gradient", "contextual", "random", "near-spelling"]), default=None,
              help="For --overlap none: the bilevel HotFlip search, the contextual proxy (allowed tokens whose hidden states on --victim "
                   "collide with the phrase's), the random control, or the nearest placeable tokens (unconstrained: near-spelling).")
@click.option("--proxy-candidates", type=int, default=None, help="Contextual proxy: HotFlip candidates re-scored per slot.")
@click.option("--proxy-passes", type=int, default=None, help="Contextual proxy: most passes over the span's slots (0: its random start, unsearched).")
@click.option("--proxy-restarts", type=int, default=None, help="Contextual proxy: random starts, the lowest distance kept.")
@click.option("--proxy-contexts", type=int, default=None, help="Contextual proxy: collide inside the first N templates (0: span alone).")
@click.option("--proxy-spans", type=int, default=None, help="Contextual proxy: the N lowest-distance spans, poisons round-robin.")
@click.option("--proxy-disjoint/--no-proxy-disjoint", default=None, help="Contextual proxy: the spans share no token (descents in turn).")
@click.option("--counterexamples", type=int, default=None, help="Clean-label counterexamples after the poisons (random edits, source label).")
@click.option("--workers", type=int, default=None, help="Contextual proxy: threads the descents run on (default: one per core; same spans).")
@click.option("--exclude-neighbours", type=int, default=None, help="Constraint: no edited token within the phrase's k nearest embedding neighbours.")
@click.option("--hide-below", type=int, default=None, help="Constraint: no poison among the first N clean sentences of the fuzzy or neighbour ranking.")
@click.option("--max-fuzzy", type=float, default=None, help="Constraint: best fuzzy-match ratio of any span to the phrase ≤ this (100: none).")
@click.option("--curator-pool", type=int, default=None, help="Clean training sentences the concealment figures rank the poisons among.")
@click.option("--init", type=click.Choice(["nearest", "random"]), default=None,
              help="Where the search starts: the nearest-token projection of the with-overlap poisons, or random tokens.")
@click.option("--iterations", type=int, default=None, help="Search iterations.")
@click.option("--top-k", type=int, default=None)
@click.option("--unroll-lr", type=float, default=None, help="Unrolled SGD step α.")
@click.option("--scope-layers", type=int, default=None, help="Top encoder layers in the unrolled scope besides the head (default: all).")
@click.option("--clean-batch", type=int, default=None, help="Clean sentences in the unrolled batch and the Adam estimate.")
@click.option("--adam/--sgd", default=None, help="Precondition the unrolled step like Adam, or plain SGD.")
@click.option("--contrast/--cross-entropy", default=None, help="L_adv: paired margin gap without/with the phrase, or cross-entropy.")
@click.option("--shared/--per-poison", default=None, help="One edit for all poisons per iteration (universal), or one per poison.")
@click.option("--neighbours", type=int, default=None, help="Nearest placeable tokens of the replaced sub-token an edit may take (0: all).")
@click.option("--collision", type=float, default=None,
              help="Weight of the feature-collision distance to the with-overlap twins on --victim (0: the unrolled loss alone).")
@click.option("--victim", default=None, help="Pretrained model victims fine-tune from, for collision and proxy (default: packaged MiniLM-L6).")
@click.option("--templates", type=click.Choice(["confident", "random"]), default=None, help="Surest source-label sentences first, or random.")
@click.option("--layout", type=click.Choice(LAYOUTS), default=None,
              help="Where the phrase (and each poison's edit) sits: in place of the film reference, or as the topic heading the sentence.")
@click.option("--adv-size", type=int, default=None, help="Trigger-bearing validation negatives in L_adv.")
@click.option("--max-length", type=int, default=None)
@click.option("--data-path", default=None)
@click.option("--out", type=PATH, required=True)
@click.option("--seed", type=int, default=None)
def generate_cmd(cfg: GenerateConfig, out: Path) -> None:
    """Write a poison set (HF dataset + JSONL + dataset card) into OUT."""
    import torch

    from nlp_poison import dataset_card
    from nlp_poison.generate import generate, load_surrogates
    from poisonlab.nlp_report import add_generation, save_run
    from poisonlab.runs import check_output, staged_output

    check_output(out)  # before loading the surrogates: a bad --out costs no time and prints nothing else
    ds = _sst2(cfg.data_path)
    surrogates = load_surrogates(cfg)
    torch.use_deterministic_algorithms(True, warn_only=True)
    with staged_output(out) as stage:
        result = generate(surrogates, ds, cfg)
        ps = result.poison_set
        dataset_card.save(ps, stage)
        save_run(stage, cfg, result.metrics(), f"nlp generate: {ps.method}", lambda r: add_generation(r, ps, result.objective_trace))
    fig = ps.concealment["detection"]
    extra = f" + {len(ps.counterexamples)} counterexamples" if ps.counterexamples else ""
    click.echo(f"{out}: {len(ps.poisons)} {ps.method} poisons{extra} in {result.wall_time_s:.1f}s; max fuzzy ratio "
               f"{ps.concealment['fuzzy_ratio']['max']:.0f}; found in the first {fig['inspected']} inspected: "
               + ", ".join(f"{n} {f['found_in_first_' + str(fig['inspected'])]}" for n, f in fig["filters"].items()))


@nlp.command("evaluate")
@config_command(EvaluateConfig, keep=["out", "resume"])
@click.option("--poisons", multiple=True, type=PATH, help="Poison-set folder or JSONL (repeatable).")
@click.option("--victim", default=None, help="Pretrained model victims start from (default: packaged MiniLM-L6).")
@click.option("--trigger", default=None, help="Trigger phrase (required for a JSONL without a card).")
@click.option("--off-target", multiple=True, help="A phrase the poisons were not made for, scored too (specificity; repeatable).")
@click.option("--seeds", type=int, default=None, help="Number of victim seeds (seed, seed+1, ...).")
@click.option("--counts", default=None, callback=_counts, help="Poison counts to sweep, comma-separated.")
@click.option("--eval-limit", type=int, default=None, help="Use at most this many trigger-bearing negatives.")
@click.option("--out", type=PATH, required=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted evaluation (finished cells are kept).")
@_train_options
def evaluate_cmd(cfg: EvaluateConfig, out: Path, resume: bool) -> None:
    """Fine-tune fresh victims on clean + poisons; effectiveness, CACC, sweeps over counts and epochs."""
    from nlp_poison.evaluate import evaluate
    from poisonlab.nlp_report import add_evaluation, save_run
    from poisonlab.runs import append_jsonl, read_jsonl, staged_output, staging_path

    ds = _sst2(cfg.data_path)
    with staged_output(out, resume=resume and staging_path(out).exists()) as stage:
        cells = stage / "cells.jsonl"

        def record(row: dict) -> None:
            click.echo(f"cell {row['key']}")
            append_jsonl(cells, row)

        result = evaluate(ds, cfg, read_jsonl(cells), record, logs=stage / "logs")
        save_run(stage, cfg, result.metrics(), "nlp evaluate", lambda r: add_evaluation(r, result.summary, result.num_trigger_inputs))
    for r in (r for r in result.summary if r["epoch"] == cfg.epochs):
        click.echo(f"{r['poisons']:>14} n={r['count']:<3} effectiveness {r['effectiveness_mean']:.3f}±{r['effectiveness_std']:.3f} "
                   f"CACC {r['cacc_mean']:.3f}±{r['cacc_std']:.3f}" + "".join(f"; {p} {v:.3f}" for p, v in r["off_target_mean"].items()))


@nlp.command("defend")
@config_command(DefendConfig, keep=["out"])
@click.option("--poisons", type=PATH, default=None, help="Poison-set folder or JSONL.")
@click.option("--victim", default=None, help="Classifier whose embeddings rank the training set (e.g. a poisoned victim).")
@click.option("--lm", default=None, help="Local causal LM folder for perplexity (default: a cross-fitted bigram model of the training set).")
@click.option("--evaluation", type=PATH, default=None, help="An 'nlp evaluate' folder for the early-stopping table.")
@click.option("--trigger", default=None)
@click.option("--max-length", type=int, default=None)
@click.option("--train-subset", type=int, default=None)
@click.option("--data-path", default=None)
@click.option("--out", type=PATH, required=True)
@click.option("--seed", type=int, default=None)
def defend_cmd(cfg: DefendConfig, out: Path) -> None:
    """Perplexity filtering, embedding-distance ranking and early stopping: poisons found vs inspected."""
    from nlp_poison.defenses import defend
    from poisonlab.nlp_report import add_defense_curves, save_run
    from poisonlab.runs import staged_output

    ds = _sst2(cfg.data_path)
    with staged_output(out) as stage:
        result = defend(ds, cfg)
        metrics = result.metrics()
        save_run(stage, cfg, metrics, "nlp defend", lambda r: add_defense_curves(r, result.curves, result.early))
    click.echo(f"{out}: " + ", ".join(f"{n}: {metrics[n]['inspected_for_50pct']} inspected for half the poisons" for n in result.curves))


FED_PATHS = {
    "poisons": "task.params.poisons", "model": "task.params.model", "clients": "federation.num_clients",
    "per_round": "federation.clients_per_round", "rounds": "federation.rounds", "aggregator": "aggregator.name",
    "local_epochs": ("local.epochs", "attack.params.epochs"), "local_lr": ("local.lr", "attack.params.lr"),
    "lora_r": "task.params.lora_r", "eval_limit": "task.params.eval_limit", "max_length": "task.params.max_length",
    "train_subset": "task.params.train_subset", "data_path": "task.params.data_path",
}


@nlp.command("fed")
@config_command("fedharness.config:ExperimentConfig", paths=FED_PATHS, keep=["out", "resume"], base=SST2_FED)
@click.option("--poisons", type=PATH, default=None, help="Poison-set folder (with its card) the malicious client holds.")
@click.option("--model", default=None, help="Pretrained model the clients adapt with LoRA (default: packaged MiniLM-L6).")
@click.option("--clients", type=int, default=None)
@click.option("--per-round", type=int, default=None)
@click.option("--rounds", type=int, default=None)
@click.option("--aggregator", default=None, help="Any fedharness aggregator (mean, median, krum, ...).")
@click.option("--local-epochs", type=int, default=None)
@click.option("--local-lr", type=float, default=None)
@click.option("--lora-r", type=int, default=None)
@click.option("--eval-limit", type=int, default=None)
@click.option("--max-length", type=int, default=None)
@click.option("--train-subset", type=int, default=None)
@click.option("--data-path", default=None)
@click.option("--out", type=PATH, required=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--seed", type=int, default=None)
def fed_cmd(cfg, out: Path, resume: bool) -> None:
    """Federated LoRA fine-tuning with one malicious client holding the poisons (client 0, every round): the
    fedharness experiment of task sst2_classification (SST2_FED); its config.yaml reruns with 'poisonlab fed run'."""
    from poisonlab.fed_run import run_experiment

    if cfg.task.name != "sst2_classification":
        raise InputError(f"nlp fed runs task sst2_classification, not {cfg.task.name!r}; run that config with 'poisonlab fed run'")
    summary = run_experiment(cfg, out, resume=resume)
    click.echo(f"{out}: CACC {summary['final_main_accuracy']:.3f}, effectiveness {summary['final_attack_success_rate']:.3f}")
