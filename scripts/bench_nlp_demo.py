"""Benchmark: the demo's NLP step (``poisonlab demo --quick``) over victim seeds, every poison construction side by side.

Per seed, as the demo does it: 1,024 SST-2 training sentences, the clean MiniLM surrogate (the demo's, trained
once into the user cache) is the clean floor; 64 poisons from the same confident templates under the
concealment constraints (K = 50, fuzzy ≤ 60) for ``contextual`` (the demo's concealed set), ``start`` (the
nearest allowed projection, the demo's former concealed set) and ``random``, and the unconstrained
``near-spelling`` baseline; each set trains one fresh victim (the clean model's seed, 2 epochs, bf16) and is
measured on 100 trigger-bearing negative test sentences and 200 test sentences. One row per (set, seed) in
``WORK/cells.jsonl`` (a rerun skips the cells it has), the table in ``WORK/bench.md``. One torch thread.

    OMP_NUM_THREADS=1 nice -n 10 python scripts/bench_nlp_demo.py --work runs/bench_nlp_demo --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

import torch

from nlp_poison.generate import concealment, unconstrained, write_poisons
from poisonlab.demo_nlp import Setup, headline, scores, setup, victim
from poisonlab.runs import append_jsonl, read_jsonl

SETS = {
    "contextual": {"method": "contextual"},
    "start": {"method": "near-spelling"},
    "random": {"method": "random"},
    "near-spelling": {"method": "near-spelling", "exclude_neighbours": 0, "max_fuzzy": 100},
}
"""Set name → change of the demo's generator config (near-spelling also drops the constraints)."""


def effect(model, st: Setup) -> tuple[float, float]:
    """Effectiveness (share of trigger-bearing negatives predicted positive) and clean accuracy."""
    probs, cacc = scores(model, st)
    return float((probs > 0.5).mean()), cacc


def run_seed(seed: int, names: list[str], work: Path, done: set[str], max_fuzzy: float | None, proxy: dict) -> None:
    """The clean floor and every set of ``names`` not in ``done`` for victim seed ``seed`` (``max_fuzzy``: the demo's bound if None;
    ``proxy``: changes of the contextual proxy's settings)."""
    st = setup(work, "quick", seed, **({} if max_fuzzy is None else {"max_fuzzy": max_fuzzy}))
    if f"clean/{seed}" not in done:
        eff, cacc = effect(st.surrogates.models[0], st)
        append_jsonl(work / "cells.jsonl", {"key": f"clean/{seed}", "set": "clean", "seed": seed, "effectiveness": eff, "cacc": cacc})
    for name in names:
        if f"{name}/{seed}" in done:
            continue
        set_cfg = dataclasses.replace(st.gen, **SETS[name], **(proxy if name == "contextual" else {}))
        set_inputs = unconstrained(st.surrogates, st.inputs) if not set_cfg.constrained else st.inputs
        start = time.process_time()
        poisons, _, _ = write_poisons(st.surrogates, set_inputs, set_cfg, progress=False)
        generation = time.process_time() - start
        full_figures = concealment(st.surrogates, set_inputs, poisons, set_cfg)
        figures = {**headline(full_figures), "edited_ranks": {k: v["edited"] for k, v in full_figures["embedding_rank"].items()}}
        start = time.process_time()
        eff, cacc = effect(victim(poisons, st.train, st.cfg), st)
        append_jsonl(work / "cells.jsonl", {"key": f"{name}/{seed}", "set": name, "seed": seed, "effectiveness": eff, "cacc": cacc,
                                            "generation_cpu_s": generation, "victim_cpu_s": time.process_time() - start,
                                            "example": poisons[0].sentence, "load": os.getloadavg()[0], **figures})


def table(rows: list[dict], seeds: list[int]) -> str:
    """Per set: effectiveness and clean accuracy per seed (mean), the concealment figures per seed, one example."""
    cell = {(r["set"], r["seed"]): r for r in rows}
    per_seed = lambda got, key, fmt: " / ".join(fmt(r[key]) if key in r else "–" for r in got)
    lines = ["| set | effectiveness % per seed " + " / ".join(map(str, seeds)) + " (mean) | clean accuracy % (mean) | max fuzzy | "
             "fuzzy: found in first 500 | neighbour ranking: found in first 500 | flagged by the 50-neighbour filter | example (first seed) |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ["clean", *SETS]:
        got = [cell[(name, s)] for s in seeds if (name, s) in cell]
        if not got:
            continue
        pct = lambda v: f"{100 * v:.0f}"
        lines.append(f"| {name} | {per_seed(got, 'effectiveness', pct)} ({100 * statistics.mean(r['effectiveness'] for r in got):.1f}) | "
                     f"{per_seed(got, 'cacc', lambda v: f'{100 * v:.1f}')} ({100 * statistics.mean(r['cacc'] for r in got):.1f}) | "
                     f"{per_seed(got, 'max_fuzzy', str)} | {per_seed(got, 'fuzzy_found', str)} | {per_seed(got, 'neighbour_ranked_found', str)} | "
                     f"{per_seed(got, 'neighbour_flagged', str)} | {got[0].get('example', '')} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("runs/bench_nlp_demo"))
    p.add_argument("--seeds", default="0,1,2", help="Comma-separated victim seeds.")
    p.add_argument("--sets", default=",".join(SETS), help=f"Comma-separated sets of {', '.join(SETS)}.")
    p.add_argument("--max-fuzzy", type=float, default=None, help="Fuzzy bound of the constrained sets (default: the demo's).")
    p.add_argument("--proxy-candidates", type=int, default=None, help="Contextual proxy's candidates per slot (default: GenerateConfig's).")
    p.add_argument("--proxy-restarts", type=int, default=None, help="Contextual proxy's random starts (default: GenerateConfig's).")
    a = p.parse_args()
    torch.set_num_threads(1)
    seeds, names = [int(x) for x in a.seeds.split(",")], [n for n in a.sets.split(",") if n]
    if not set(names) <= set(SETS):
        p.error(f"--sets: choose from {', '.join(SETS)}")
    a.work.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        proxy = {k: v for k, v in (("proxy_candidates", a.proxy_candidates), ("proxy_restarts", a.proxy_restarts)) if v is not None}
        run_seed(seed, names, a.work, {r["key"] for r in read_jsonl(a.work / "cells.jsonl")}, a.max_fuzzy, proxy)
    text = table(read_jsonl(a.work / "cells.jsonl"), seeds) + f"\n\n1 torch thread; load average at the end {os.getloadavg()[0]:.2f}\n"
    (a.work / "bench.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
