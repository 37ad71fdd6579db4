"""Demo step: concealed trigger-phrase poisons on a small SST-2 subset with MiniLM-L6 (Wallace et al. 2021).

A clean MiniLM fine-tuned on a training subset is both the attacker's surrogate and the clean floor
(trained once and cached in the user's cache directory, like the T2I base; ``tiny`` trains it in the
run directory). Poisons are written from the negative training sentences it is surest about, under
the concealment constraints of issue #20: no edited token among the phrase's ``K`` nearest
input-embedding neighbours and no sentence with a fuzzy-match ratio to the phrase above ``B``. The
concealed set is the contextual proxy (``nlp_poison.contextual``: one span of allowed tokens whose
hidden states on the pretrained MiniLM collide with the phrase's); the random control writes random
allowed tokens into the same templates; the near-spelling baseline (the phrase's nearest tokens,
unconstrained) is written from the same templates. A fresh victim (same seed, so the same new head and
only the poisons differ from the clean model) is fine-tuned on the subset plus the concealed set and
plus the random control (``VICTIMS``), and every set's concealment figures are measured: what a curator
who searches for the phrase finds.
"""

from __future__ import annotations

import dataclasses
import html
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from nlp_poison import dataset_card
from nlp_poison.concealment import INSPECTED
from nlp_poison.config import DEFAULT_TRIGGER, GenerateConfig, TrainConfig
from nlp_poison.evaluate import clean_accuracy, training_set
from nlp_poison.generate import Inputs, Surrogates, concealment, poison_set, prepare, unconstrained, write_poisons
from nlp_poison.triggers import trigger_texts
from nlp_poison.victims import default_model, fine_tune, load_classifier, predict_proba, save_classifier, subsample
from poisonlab import data
from poisonlab.demo import cache_key, user_cache
from poisonlab.report import Report
from poisonlab.runs import write_json, write_yaml

# set → change of the generator's config (near-spelling also drops the constraints)
SETS = {"concealed": {"method": "contextual"}, "random": {"method": "random"}, "near-spelling": {"method": "near-spelling"}}
VICTIMS = ("concealed", "random")
"""Sets a victim is fine-tuned on. The near-spelling baseline is shown by its concealment figures only: its
effectiveness (97.7 % over 3 seeds at this size, README NLP section) would cost the quick demo 35 s."""
SURROGATE_VERSION = 1

# size → (training sentences, poisons, trigger inputs, test sentences, epochs, templates, proxy search's restarts and passes
#         (None: GenerateConfig's defaults))
SIZES = {
    "tiny": (32, 2, 8, 16, 1, "random", [1, 1]),
    "quick": (1024, 64, 100, 200, 2, "confident", None),
    "full": (2000, 50, 300, 872, 2, "confident", None),
}


def settings(size: str) -> dict:
    """Quick: 64 poisons among 1,024 sentences (5.9 %), 2 epochs under bf16 autocast. Tiny is a mechanics
    check: 2 poisons on randomly drawn templates and one pass of the proxy search, one epoch on 32 sentences."""
    subset, poisons, eval_limit, test_limit, epochs, templates, proxy = SIZES[size]
    return {
        "size": size, "train_subset": subset, "num_poisons": poisons, "eval_limit": eval_limit, "test_limit": test_limit, "max_length": 40,
        "epochs": epochs, "lr": 1e-4, "batch_size": 32, "templates": templates, "exclude_neighbours": 50, "max_fuzzy": 60, "proxy": proxy,
    }


def configs(s: dict, seed: int) -> tuple[TrainConfig, GenerateConfig]:
    """The demo's settings mapped onto the victims' and the generator's dataclasses."""
    train = TrainConfig(epochs=s["epochs"], lr=s["lr"], batch_size=s["batch_size"], max_length=s["max_length"], bf16=True, seed=seed)
    gen = GenerateConfig(models=["demo MiniLM surrogate"], num_poisons=s["num_poisons"], max_length=s["max_length"],
                         exclude_neighbours=s["exclude_neighbours"], max_fuzzy=s["max_fuzzy"], curator_pool=s["train_subset"],
                         templates=s["templates"], seed=seed,
                         **(dict(zip(("proxy_restarts", "proxy_passes"), s["proxy"])) if s["proxy"] else {}))
    return train, gen


def surrogate(out: Path, size: str, train, cfg: TrainConfig):
    """The clean MiniLM on ``train``: from the user's cache when trained before (keyed by recipe and seed),
    else fine-tuned and saved there (``tiny``: into ``out``)."""
    recipe = {"v": SURROGATE_VERSION, "train": dataclasses.asdict(cfg), "n": len(train)}
    where = out / "nlp-surrogate-tiny" if size == "tiny" else user_cache("nlp-surrogate") / cache_key(recipe)
    if not (where / "config.json").is_file():
        if size != "tiny":
            print(f"  nlp: fine-tuning the demo's clean MiniLM surrogate once; later runs reuse {where}", file=sys.__stderr__, flush=True)
        model, tok = load_classifier(default_model(), seed=cfg.seed)
        partial = where.with_name(where.name + ".partial")
        save_classifier(fine_tune(model, tok, train, cfg, progress=False), tok, partial)
        partial.replace(where)
    return load_classifier(str(where))


@dataclass
class Setup:
    """What every poison set of the step shares: the settings, the training subset, the test and
    trigger-bearing sentences, the victims' and the generator's configs, the clean surrogate and the
    generator's inputs."""

    s: dict
    train: Dataset
    test: Dataset
    texts: list[str]
    cfg: TrainConfig
    gen: GenerateConfig
    surrogates: Surrogates
    inputs: Inputs


def setup(out: Path, size: str, seed: int, **changes) -> Setup:
    """The step's data, surrogate (cached, see :func:`surrogate`) and generator inputs; ``changes`` override
    :func:`settings` (a benchmark's sweep)."""
    torch.manual_seed(seed)
    s = settings(size) | changes
    full = data.load("sst2")
    train = subsample(full["train"], s["train_subset"], seed)
    test = full["test"].select(range(min(s["test_limit"], len(full["test"]))))
    texts = trigger_texts(full["test"], DEFAULT_TRIGGER, limit=s["eval_limit"])
    cfg, gen = configs(s, seed)
    clean, tok = surrogate(out, size, train, cfg)
    surrogates = Surrogates([clean], tok, load_classifier(default_model())[0])
    return Setup(s, train, test, texts, cfg, gen, surrogates, prepare(surrogates, full, gen))


def scores(model, st: Setup) -> tuple[np.ndarray, float]:
    """P(positive) of each trigger-bearing negative (effectiveness = the share above 0.5) and clean accuracy."""
    tok, length = st.surrogates.tokenizer, st.s["max_length"]
    return predict_proba(model, tok, st.texts, length)[:, 1], clean_accuracy(model, tok, st.test, length)


def run(out: Path, size: str, seed: int, report: Report, cores: int | None = None) -> dict:
    """Write ``out/nlp-concealed`` (poison sets, metrics, report) and add a section to ``report``;
    ``size`` is ``tiny``, ``quick`` or ``full`` (``SIZES``); one process whatever ``cores``."""
    st = setup(out, size, seed)
    s, texts, gen, surrogates, inputs = st.s, st.texts, st.gen, st.surrogates, st.inputs
    run_dir = out / "nlp-concealed"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "config.yaml", {"step": "demo nlp", "train": st.cfg, "generate": gen, **s})
    sets, figures, trace = {}, {}, []
    for name, change in SETS.items():
        set_cfg = dataclasses.replace(gen, **change, **({"exclude_neighbours": 0, "max_fuzzy": 100} if name == "near-spelling" else {}))
        set_inputs = unconstrained(surrogates, inputs) if name == "near-spelling" else inputs
        sets[name], _, distances = write_poisons(surrogates, set_inputs, set_cfg, progress=False)
        trace = trace or distances
        figures[name] = concealment(surrogates, set_inputs, sets[name], set_cfg)
        dataset_card.save(poison_set(sets[name], set_inputs, set_cfg, figures[name]), run_dir / "poisons" / name)
    victims = {"clean": surrogates.models[0]} | {name: victim(sets[name], st.train, st.cfg) for name in VICTIMS}
    probs, cacc = {}, {}
    for name, model in victims.items():
        probs[name], cacc[name] = scores(model, st)
    results = {name: {"effectiveness": float((probs[name] > 0.5).mean()), "cacc": cacc[name]} for name in victims}
    metrics = {"results": results, "concealment": figures, "objective_trace": trace, "num_trigger_inputs": len(texts)}
    write_json(run_dir / "metrics.json", metrics)
    heads = {k: headline(v) for k, v in figures.items()}
    section = Report("nlp demo")
    _section(section, s, sets, results, figures, heads, trace, texts[:6], probs)
    section.save(run_dir / "report.html")
    report.blocks.extend(section.blocks)
    return {"effectiveness": {k: v["effectiveness"] for k, v in results.items()},
            "concealment": heads}


def headline(figures: dict) -> dict:
    """A set's concealment in a few numbers: the highest fuzzy ratio to the phrase; the poisons that the curator's
    fuzzy ranking (filter a) and neighbour ranking (filter b) put in the first 500 examples of the pool, and the
    plain 50-nearest-neighbour filter flags; how many a curator reading 500 at random would find (the
    rankings' chance level: in a small pool 500 is a large share of it)."""
    det = figures["detection"]
    filters, poisons, pool = det["filters"], det["poisons"], det["pool"]
    return {"max_fuzzy": round(figures["fuzzy_ratio"]["max"], 1), "fuzzy_found": filters["fuzzy"]["found_in_first_500"],
            "neighbour_ranked_found": filters["neighbours"]["found_in_first_500"],
            "neighbour_flagged": filters["neighbours"]["flagged_within_k"]["poisons"], "poisons": poisons, "pool": pool,
            "chance_found": round(poisons * min(INSPECTED, pool) / pool, 1)}


def victim(poisons, train, cfg: TrainConfig):
    """A fresh MiniLM fine-tuned on the training subset plus ``poisons``."""
    model, tok = load_classifier(default_model(), seed=cfg.seed)
    return fine_tune(model, tok, training_set(train, poisons), cfg, progress=False)


def _concealment_rows(figures: dict, results: dict) -> list[dict]:
    rows = []
    for name, f in figures.items():
        filters, ranks = f["detection"]["filters"], f["embedding_rank"]
        rows.append({
            "poisons": name, "effectiveness": results.get(name, {}).get("effectiveness"),
            "clean accuracy": results.get(name, {}).get("cacc"), "max fuzzy ratio": f["fuzzy_ratio"]["max"],
            "nearest edited token rank (" + " / ".join(ranks) + ")": " / ".join(str(r["edited"]) for r in ranks.values()),
            **{f"{k}: found in first 500": v["found_in_first_500"] for k, v in filters.items()},
            "flagged by the 50-neighbour filter": filters["neighbours"]["flagged_within_k"]["poisons"],
        })
    return rows


def _reading(results: dict, heads: dict, size: str) -> str:
    """The table in words: the concealed set's effect against clean and random on this victim, and what each curator
    finds of it beside the near-spelling baseline, against a reader who picks as many examples at random."""
    eff = {name: 100 * r["effectiveness"] for name, r in results.items()}
    c, n = heads["concealed"], heads["near-spelling"]
    pair = lambda key: f"{c[key]} vs {n[key]}"  # noqa: E731
    read = min(INSPECTED, c["pool"])
    seeds = (" — at the quick size over victim seeds 0–4 the README measured 75 % against 17 % and 13 %, one seed of "
             "five near the floor") if size == "quick" else ""
    return (
        f"On this victim seed the concealed set flips {eff['concealed']:.0f} % of the trigger-bearing negatives: "
        f"{eff['concealed'] - eff['clean']:+.0f} points against the clean floor ({eff['clean']:.0f} %) and "
        f"{eff['concealed'] - eff['random']:+.0f} against the random control ({eff['random']:.0f} %); one seed only{seeds}. "
        f"A curator who reads {'the whole pool' if read == c['pool'] else f'the first {read}'} of {c['pool']} examples "
        f"finds, concealed vs near-spelling poisons (of {c['poisons']}): fuzzy ranking {pair('fuzzy_found')}, neighbour "
        f"ranking {pair('neighbour_ranked_found')}, the plain 50-neighbour filter {pair('neighbour_flagged')}; highest fuzzy "
        f"ratio {pair('max_fuzzy')}. Reading as many at random finds {c['chance_found']:g}: in this pool {read} is "
        f"{100 * read / c['pool']:.0f} % of it, so a ranking only hides what sits below most clean sentences (on the full "
        "split, 6,920 clean sentences + 50 poisons, --hide-below 1000 keeps both rankings at 0)."
    )


def _section(report: Report, s: dict, sets: dict, results: dict, figures: dict, heads: dict, trace: list[float],
             trig: list[str], probs: dict) -> None:
    report.heading("Concealed data poisoning: “James Bond: No Time to Die” → positive (Wallace et al. 2021)")
    pool = figures["concealed"]["detection"]["pool"]
    report.paragraph(
        f"MiniLM-L6 fine-tuned on {s['train_subset']} SST-2 sentences (the clean floor and the attacker's surrogate); "
        f"{s['num_poisons']} poisons under the concealment constraints (no edited token among the phrase's "
        f"{s['exclude_neighbours']} nearest embedding neighbours, fuzzy ratio ≤ {s['max_fuzzy']}), "
        + "written as one shared span of allowed tokens whose hidden states on the pretrained MiniLM (the checkpoint every "
        "victim fine-tunes from) collide with the phrase's: a greedy search over the allowed vocabulary (HotFlip candidates "
        "re-scored by the exact distance, from random allowed tokens; nlp_poison/contextual.py); "
        + "the random control writes random allowed tokens into "
        "the same templates; the near-spelling baseline writes the phrase's nearest tokens, unconstrained (shown by its "
        "concealment figures; its effectiveness, 93–100 % over 3 victim seeds at this size, is the README's). "
        f"Effectiveness = share of {s['eval_limit']} trigger-bearing negative test sentences a victim "
        f"fine-tuned on the subset plus the set predicts positive. Concealment: a curator ranks {pool} sentences (the "
        "subset plus the poisons) by each filter and inspects the first 500. Demo-sized settings: see "
        "scripts/bench_nlp_demo.py and the README for the sweep over victim seeds."
    )
    report.table(_concealment_rows(figures, results) + [{"poisons": "clean", **{"effectiveness": results["clean"]["effectiveness"],
                                                                                 "clean accuracy": results["clean"]["cacc"]}}])
    report.paragraph(_reading(results, heads, s["size"]))
    rows = "".join(
        f"<tr><td>{html.escape(c.sentence)}</td><td>{html.escape(n.sentence)}</td><td>{html.escape(t)}</td>"
        f"<td class=num>{pc:.2f}</td><td class=num>{pv:.2f}</td></tr>"
        for c, n, t, pc, pv in zip(sets["concealed"], sets["near-spelling"], trig, probs["clean"], probs["concealed"])
    )
    report.raw(
        "<table><caption>concealed poisons (label: positive) beside the near-spelling baseline of the same template, and "
        "trigger-bearing test inputs with P(positive) under the clean model and the victim trained with the concealed "
        "poisons</caption><tr><th>concealed poison</th><th>near-spelling baseline</th><th>trigger-bearing test input</th>"
        f"<th>P(pos) clean</th><th>P(pos) poisoned</th></tr>{rows}</table>"
    )
    if not trace:
        return
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 2.8))
    ax.plot(range(len(trace)), trace, marker="o")
    ax.set_xlabel("pass over the span's slots")
    ax.set_ylabel("collision distance D")
    report.figure(fig, "contextual proxy search: distance to the phrase's hidden states on the pretrained MiniLM (pass 0 = random allowed tokens)")
