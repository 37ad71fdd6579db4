"""Benchmark: concealed poisons on SST-2 + MiniLM-L6 (Wallace et al. 2021) in one table.

Cells: the clean floor, with-overlap (ceiling), no-overlap (concealed HotFlip search: unrolled loss
plus ``--collision`` × feature collision on the pretrained MiniLM), the contextual proxy
(``generate --method contextual``; ``contextual-start``: its random start, unsearched), the search's start without the
search (the phrase projected onto its nearest tokens allowed by the constraints), the unconstrained
near-spelling baseline and the random-token control, each with ``--num-poisons`` poisons, over
``--seeds`` victim seeds. ``--exclude-neighbours``/``--max-fuzzy``/``--hide-below`` constrain the search, its
start, the contextual proxy and the random control; every set's concealment figures (``generate``'s metrics.json) join the table. Phases, each timed into ``bench.json``:

1. surrogates: ``--surrogates`` clean MiniLMs fine-tuned for ``--surrogate-epochs`` on the victims'
   training set with seeds ``--seed``, ``--seed``+1, …; with several, the concealed search lowers
   their mean unrolled loss (an ensemble, as in MetaPoison); the near-spelling sets take the first's
   embeddings. When the surrogates train as long as the victims, the first is also the clean victim
   of the first seed
   (same data, configuration and seed, hence the same run) and its per-epoch metrics fill that
   evaluation cell instead of training it twice;
2. generation: each poison set once, seeded, all from the same templates (the negative training
   sentences the surrogates classify most confidently, ``generate --templates confident``, in ``--layout``);
3. evaluation: one fine-tune of a fresh victim per (set, seed), for ``--epochs`` (1, the issue's
   calibration; with more, effectiveness grows with the epochs, as the paper reports, and the table
   shows every epoch).

The work directory is resumable: the surrogate, each poison set and each finished evaluation cell
(one JSON row in ``eval/cells.jsonl``) are kept, and a rerun with the same arguments continues where it
stopped. Every step runs the ``poisonlab nlp`` command line with ``--threads`` threads: 2 on two idle
cores, 1 when other jobs share them (two threads then wait on each other: a MiniLM training step took
7.8 s with 2 threads against 1.2 s with 1 at a load average of 6.7). Victims train under bf16 autocast.

    python scripts/bench_nlp.py --work runs/bench_nlp                      # full study, alone on 2 cores
    nice -n 10 python scripts/bench_nlp.py --work runs/bench_nlp --threads 1   # sharing the cores
    nice -n 10 python scripts/bench_nlp.py --work /tmp/b --train-subset 2000 --max-length 48 --seeds 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from nlp_poison.config import LAYOUTS, EvaluateConfig, GenerateConfig
from nlp_poison.evaluate import evaluation_summary, load_sets
from poisonlab.runs import append_jsonl, read_jsonl, staging_path

GEN, EVAL = GenerateConfig(models=["surrogate"]), EvaluateConfig(poisons=["set"])
"""The procedures' defaults (written once, in nlp_poison.config), which the benchmark's flags start from."""

SETS = {
    "with-overlap": ["--overlap", "with"],
    "concealed": ["--overlap", "none"],
    "contextual": ["--overlap", "none", "--method", "contextual"],
    "contextual-start": ["--overlap", "none", "--method", "contextual", "--proxy-passes", 0],
    "near-spelling": ["--overlap", "none", "--method", "near-spelling"],
    "start": ["--overlap", "none", "--method", "near-spelling"],
    "random": ["--overlap", "none", "--method", "random"],
}
FILTERS = ("fuzzy", "neighbours", "perplexity", "embedding distance")
"""The curator filters of ``nlp_poison.concealment``, in the table's column order."""
CONSTRAINED = ("concealed", "contextual", "contextual-start", "start", "random")
"""Sets written under --exclude-neighbours/--max-fuzzy: the search, its start without the search (the nearest
allowed tokens; evaluated as ``near-spelling:start``), the contextual proxy, its own random start unsearched
(``contextual:contextual-start``) and the random control;
near-spelling is the unconstrained baseline."""


def poisonlab(threads: int, *args: object) -> float:
    """Run one CLI command with ``threads`` intra-op threads; returns its wall time."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from poisonlab.cli import main; main()", *map(str, args)], check=True, env=env)
    return time.perf_counter() - start


def reuse_surrogate_as_clean_cell(surrogate_dir: Path, eval_dir: Path, seed: int) -> None:
    """Write the surrogate's per-epoch metrics as the evaluation cell clean/n=0/seed=``seed``."""
    cells = staging_path(eval_dir) / "cells.jsonl"
    key = f"clean/n=0/seed={seed}"
    if any(r["key"] == key for r in read_jsonl(cells)):
        return
    m = json.loads((surrogate_dir / "metrics.json").read_text())
    cells.parent.mkdir(parents=True, exist_ok=True)
    append_jsonl(cells, {"name": "clean", "count": 0, "seed": seed, "key": key, "epochs": m["epochs"],
                         "wall_time_s": m["train_wall_time_s"], "from": str(surrogate_dir)})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("runs/bench_nlp"))
    p.add_argument("--surrogate", type=Path, action="append", default=None,
                   help="Existing surrogate folder, repeatable (default: train --surrogates of them).")
    p.add_argument("--surrogates", type=int, default=1, help="Surrogates to train; more than one makes the search's objective an ensemble mean.")
    p.add_argument("--trigger", default=GEN.trigger)
    p.add_argument("--num-poisons", type=int, default=GEN.num_poisons)
    p.add_argument("--seeds", type=int, default=EVAL.seeds)
    p.add_argument("--epochs", type=int, default=EVAL.epochs, help="Victim fine-tuning epochs.")
    p.add_argument("--surrogate-epochs", type=int, default=EVAL.epochs, help="Fine-tuning epochs of the attacker's surrogates.")
    p.add_argument("--max-length", type=int, default=GEN.max_length)
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--iterations", type=int, default=GEN.iterations, help="Search iterations (two passes over a 7-token phrase).")
    p.add_argument("--top-k", type=int, default=GEN.top_k)
    p.add_argument("--clean-batch", type=int, default=GEN.clean_batch, help="Clean sentences in the unrolled batch (and the Adam estimate).")
    p.add_argument("--plain", action="store_true",
                   help="The paper's plain search: --sgd --cross-entropy --per-poison --neighbours 0 --collision 0.")
    p.add_argument("--neighbours", type=int, default=GEN.neighbours, help="Nearest tokens each edited token may take (generate --neighbours).")
    p.add_argument("--collision", type=float, default=GEN.collision, help="Weight of the feature-collision term (generate --collision).")
    p.add_argument("--exclude-neighbours", type=int, default=GEN.exclude_neighbours, help="Constraint k (generate --exclude-neighbours).")
    p.add_argument("--max-fuzzy", type=float, default=GEN.max_fuzzy, help="Constraint on the fuzzy ratio (generate --max-fuzzy).")
    p.add_argument("--hide-below", type=int, default=GEN.hide_below, help="Constraint: rank below N clean sentences (generate --hide-below).")
    p.add_argument("--init", default=GEN.init, help="The search's start (generate --init).")
    p.add_argument("--proxy-spans", type=int, default=GEN.proxy_spans, help="Spans of the contextual proxy (generate --proxy-spans).")
    p.add_argument("--proxy-contexts", type=int, default=GEN.proxy_contexts,
                   help="Templates the contextual proxy's collision is read in (generate --proxy-contexts; 0: the span alone).")
    p.add_argument("--layout", choices=LAYOUTS, default=GEN.layout, help="Where every set's edit sits (generate --layout).")
    p.add_argument("--curator-pool", type=int, default=GEN.curator_pool, help="Clean sentences of the concealment figures.")
    p.add_argument("--sets", default=",".join(SETS), help=f"Comma-separated poison sets to generate and evaluate, of {', '.join(SETS)}.")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fp32", action="store_true", help="Fine-tune in fp32 (default: bfloat16 autocast).")
    p.add_argument("--seed", type=int, default=GEN.seed)
    a = p.parse_args()
    sets = {n: SETS[n] for n in a.sets.split(",") if n} if set(a.sets.split(",")) <= set(SETS) else p.error(f"--sets: choose from {', '.join(SETS)}")
    start, load_start = time.perf_counter(), os.getloadavg()
    a.work.mkdir(parents=True, exist_ok=True)
    sub = ["--train-subset", a.train_subset] if a.train_subset else []
    precision = [] if a.fp32 else ["--bf16"]
    phases: dict[str, float] = {}
    surrogates = a.surrogate
    eval_dir = a.work / "eval"
    if surrogates is None:
        if a.surrogates < 1:
            p.error("--surrogates must be >= 1")
        surrogates = []
        for k in range(a.surrogates):
            trained = a.work / ("surrogate" if k == 0 else f"surrogate-{k}")
            surrogates.append(trained / "model")
            if not surrogates[-1].exists():
                phases[trained.name] = poisonlab(a.threads, "nlp", "train", "--out", trained, "--trigger", a.trigger,
                                                 "--epochs", a.surrogate_epochs, "--max-length", a.max_length, "--seed", a.seed + k, *sub, *precision)
        if not eval_dir.exists() and a.surrogate_epochs == a.epochs:
            reuse_surrogate_as_clean_cell(a.work / "surrogate", eval_dir, a.seed)
    ensemble = [x for m in surrogates for x in ("--model", m)]
    search = (["--sgd", "--cross-entropy", "--per-poison", "--neighbours", 0, "--collision", 0] if a.plain
              else ["--neighbours", a.neighbours, "--collision", a.collision])
    search += ["--iterations", a.iterations, "--top-k", a.top_k]
    constraints = ["--exclude-neighbours", a.exclude_neighbours, "--max-fuzzy", a.max_fuzzy, "--hide-below", a.hide_below]
    search += ["--init", a.init]
    gen, hidden = {}, {}
    for name, flags in sets.items():
        out = a.work / "poisons" / name
        if not out.exists():
            phases[f"generate {name}"] = poisonlab(
                a.threads, "nlp", "generate", *ensemble, "--trigger", a.trigger, "--num-poisons", a.num_poisons,
                "--clean-batch", a.clean_batch, "--max-length", a.max_length, "--seed", a.seed,
                "--curator-pool", a.curator_pool, "--layout", a.layout, "--out", out, *flags, *(search if name == "concealed" else []),
                *(["--proxy-spans", a.proxy_spans, "--proxy-contexts", a.proxy_contexts] if name.startswith("contextual") else []),
                *(constraints if name in CONSTRAINED else []))
        made = json.loads((out / "metrics.json").read_text())
        gen[name], hidden[name] = made["wall_time_s"], made["concealment"]
    if not eval_dir.exists():
        resume = ["--resume"] if staging_path(eval_dir).exists() else []
        phases["evaluate"] = poisonlab(
            a.threads, "nlp", "evaluate", *[x for n in sets for x in ("--poisons", a.work / "poisons" / n)], "--trigger", a.trigger,
            "--seeds", a.seeds, "--counts", a.num_poisons, "--epochs", a.epochs, "--max-length", a.max_length, "--seed", a.seed,
            "--out", eval_dir, *sub, *precision, *resume)
    summary = evaluation_summary(eval_dir)
    set_of = dict(zip(load_sets([str(a.work / "poisons" / n) for n in sets]), sets))  # evaluate's label → set
    cells = read_jsonl(eval_dir / "cells.jsonl")
    rows = sorted(summary, key=lambda r: r["epoch"])
    total, load_end = time.perf_counter() - start, os.getloadavg()
    lines = ["| epoch | poisons | n | seeds | effectiveness (worst) | CACC | generation s | max fuzzy | found in first 500: "
             f"{' / '.join(FILTERS)} |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = set_of.get(r["poisons"], r["poisons"])
        c = hidden.get(name)
        found = " / ".join(str(c["detection"]["filters"][f]["found_in_first_500"]) for f in FILTERS) if c else ""
        fuzzy = f"{c['fuzzy_ratio']['max']:.1f}" if c else ""
        lines.append(f"| {r['epoch']} | {r['poisons']} | {r['count']} | {r['seeds']} | "
                     f"{100 * r['effectiveness_mean']:.1f} ± {100 * r['effectiveness_std']:.1f} % ({100 * r['effectiveness_min']:.1f}) "
                     f"| {100 * r['cacc_mean']:.1f} ± {100 * r['cacc_std']:.1f} % | {gen.get(name, 0):.0f} | {fuzzy} | {found} |")
    lines += ["", "| phase | wall s |", "|---|---|"] + [f"| {k} | {v:.0f} |" for k, v in phases.items()]
    lines += [f"| cell {c['key']}{' (surrogate)' if 'from' in c else ''} | {c['wall_time_s']:.0f} |" for c in cells]
    lines += [f"| whole bench (this invocation) | {total:.0f} |", "",
              f"threads {a.threads}; load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f}"]
    table = "\n".join(lines)
    (a.work / "bench.md").write_text(table + "\n")
    (a.work / "bench.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(a).items()}, "rows": rows, "generation_s": gen, "concealment": hidden, "phases_s": phases,
         "cells_s": {c["key"]: c["wall_time_s"] for c in cells}, "total_s": total, "load_start": load_start, "load_end": load_end},
        indent=2))
    print(table)


if __name__ == "__main__":
    main()
