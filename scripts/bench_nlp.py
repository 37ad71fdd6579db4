"""Benchmark: concealed poisons on SST-2 + MiniLM-L6 (Wallace et al. 2021) in one table.

Cells: the clean floor, with-overlap (ceiling), no-overlap (concealed HotFlip search) and the
random-token control, each with ``--num-poisons`` poisons, over ``--seeds`` victim seeds. The work
directory is resumable: the surrogate, each poison set and each finished evaluation cell (one JSON
row in ``eval/cells.jsonl``) are kept, and a rerun with the same arguments continues where it
stopped. Every step runs the ``poisonlab nlp`` command line with one thread per process.

    nice -n 10 python scripts/bench_nlp.py --work runs/bench_nlp            # full study
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

SETS = {"with-overlap": ["--overlap", "with"], "concealed": ["--overlap", "none"], "random": ["--overlap", "none", "--method", "random"]}


def poisonlab(*args: object) -> float:
    """Run one CLI command; returns its wall time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from poisonlab.cli import main; main()", *map(str, args)], check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("runs/bench_nlp"))
    p.add_argument("--surrogate", type=Path, default=None, help="Existing surrogate folder (default: train one).")
    p.add_argument("--surrogate-subset", type=int, default=None)
    p.add_argument("--trigger", default="James Bond: No Time to Die")
    p.add_argument("--num-poisons", type=int, default=50)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    surrogate = a.surrogate
    if surrogate is None:
        surrogate = a.work / "surrogate" / "model"
        if not surrogate.exists():
            sub = ["--train-subset", a.surrogate_subset] if a.surrogate_subset else []
            poisonlab("nlp", "train", "--out", a.work / "surrogate", "--max-length", a.max_length, "--seed", a.seed, *sub)
    gen = {}
    for name, flags in SETS.items():
        out = a.work / "poisons" / name
        if not out.exists():
            poisonlab("nlp", "generate", "--model", surrogate, "--trigger", a.trigger, "--num-poisons", a.num_poisons,
                      "--iterations", a.iterations, "--top-k", a.top_k, "--max-length", a.max_length, "--seed", a.seed,
                      "--out", out, *flags)
        gen[name] = json.loads((out / "metrics.json").read_text())["wall_time_s"]
    eval_dir = a.work / "eval"
    if not eval_dir.exists():
        resume = ["--resume"] if eval_dir.with_name("eval.partial").exists() else []
        sub = ["--train-subset", a.train_subset] if a.train_subset else []
        poisonlab("nlp", "evaluate", *[x for n in SETS for x in ("--poisons", a.work / "poisons" / n)], "--seeds", a.seeds,
                  "--counts", a.num_poisons, "--epochs", a.epochs, "--max-length", a.max_length, "--seed", a.seed,
                  "--out", eval_dir, *sub, *resume)
    summary = json.loads((eval_dir / "metrics.json").read_text())["summary"]
    rows = [r for r in summary if r["epoch"] == a.epochs]
    lines = ["| poisons | n | seeds | effectiveness | CACC | generation s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['poisons']} | {r['count']} | {r['seeds']} | {100 * r['effectiveness_mean']:.1f} ± {100 * r['effectiveness_std']:.1f} % "
                     f"| {100 * r['cacc_mean']:.1f} ± {100 * r['cacc_std']:.1f} % | {gen.get(r['poisons'], 0):.0f} |")
    table = "\n".join(lines)
    (a.work / "bench.md").write_text(table + "\n")
    (a.work / "bench.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "rows": rows, "generation_s": gen}, indent=2))
    print(table)


if __name__ == "__main__":
    main()
