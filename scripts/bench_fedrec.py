"""Benchmark: attacks × defenses × seeds on federated MovieLens-100K, with wall time per run.

Every cell runs the harness's rounds (``fedharness.simulation.Simulation``) on the base config with
its ``attack`` and ``aggregator`` replaced, its round records in ``<out>/cells/<cell>.jsonl``;
finished cells are skipped on a rerun. Writes ``<out>/results.json`` (per run: final and max ER@5/10/20, final HR@10/NDCG@10, wall time) and
``<out>/table.md`` (mean ± std over seeds).

    python scripts/bench_fedrec.py --seeds 0 1 2 --out runs/bench_fedrec
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

ATTACKS = {
    "clean": {"name": "none"},
    "synthetic_users": {"name": "synthetic_users", "num_attackers": 9, "every": 1},
    "random_fake_users": {"name": "random_fake_users", "num_attackers": 9, "every": 1},
    "bandwagon_fake_users": {"name": "bandwagon_fake_users", "num_attackers": 9, "every": 1},
    "fedrecattack_5pct": {"name": "fedrecattack", "num_attackers": 47, "every": 1},
}
# The synthetic-user attack and FedRecAttack with smaller per-row bounds (``--attacks`` picks them;
# not in the default grid): how large a row the attack needs against the honest rows' norms.
ROW_NORM_VARIANTS = {
    **{f"synthetic_users_rn{n}": {"name": "synthetic_users", "num_attackers": 9, "every": 1, "params": {"row_norm": float(n)}}
       for n in (10, 30, 100)},
    "fedrecattack_5pct_rn10": {"name": "fedrecattack", "num_attackers": 47, "every": 1, "params": {"row_norm": 10.0}},
}
DEFENSES = {
    "mean": {"name": "mean"},
    "hierarchical_clip": {"name": "hierarchical_clip"},
    "median": {"name": "median"},
    "trimmed_mean": {"name": "trimmed_mean", "params": {"beta": 0.1}},
    "norm_clip": {"name": "norm_clip", "params": {"quantile": 0.5}},
}
METRICS = ("er@5", "er@10", "er@20", "hr@10", "ndcg@10")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=Path("configs/ml100k_synthetic_users.yaml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=[*ATTACKS, *ROW_NORM_VARIANTS])
    p.add_argument("--defenses", nargs="+", default=list(DEFENSES), choices=list(DEFENSES))
    p.add_argument("--rounds", type=int, default=None, help="override federation.rounds")
    p.add_argument("--model", choices=["mf", "ncf"], default=None, help="override task.params.model")
    p.add_argument("--row-norm", type=float, default=None,
                   help="override the row-norm bound of the synthetic_users and fedrecattack attacks")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--row-norm-stats", action="store_true",
                   help="instead of the grid: per-round norms of the honest and malicious item rows of the first "
                        "attack/defense/seed given (<out>/row_norms.jsonl)")
    p.add_argument("--centralised", type=int, default=None, metavar="EPOCHS",
                   help="instead of the grid: the config's model trained centrally (Adam 1e-3, batch 256, neg_ratio "
                        "negatives per positive) on the same split for EPOCHS epochs, with ItemPop beside it (a sanity ceiling)")
    p.add_argument("--out", type=Path, default=Path("runs/bench_fedrec"))
    return p.parse_args()


def cell_config(base: dict, attack: dict, defense: dict, seed: int, args: argparse.Namespace):
    from fedharness.config import ExperimentConfig
    from poisonlab.config import from_dict

    mapping = copy.deepcopy(base)
    mapping.update(seed=seed, attack=copy.deepcopy(attack), aggregator=copy.deepcopy(defense))
    if args.rounds is not None:
        mapping["federation"]["rounds"] = args.rounds
    if args.model is not None:
        mapping["task"]["params"]["model"] = args.model
    if args.row_norm is not None and attack["name"] in ("synthetic_users", "fedrecattack"):
        mapping["attack"].setdefault("params", {})["row_norm"] = args.row_norm
    return from_dict(ExperimentConfig, mapping, source="bench_fedrec")


def run_cell(cfg, path: Path) -> dict:
    """One cell through the harness's rounds (``Simulation``); its records go to ``path`` (JSONL).

    The run-directory report is skipped: plotting ~1,000 clients' update norms per round costs
    more than the rounds themselves. A cell whose JSONL already holds every round is reused."""
    from fedharness.simulation import Simulation
    from poisonlab.fed_run import build_task

    start = time.perf_counter()
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    if len(rows) != cfg.federation.rounds:
        sim = Simulation(cfg, build_task(cfg))
        rows = [record for _, record in sim.rounds(sim.initial_global())]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    wall = time.perf_counter() - start
    last = rows[-1]
    return {
        **{f"final_{m}": last[m] for m in METRICS},
        **{f"max_{m}": max(r[m] for r in rows) for m in ("er@5", "er@10", "er@20")},
        "rounds": len(rows),
        "wall_time_s": wall if wall > 1 else sum(r["wall_time_s"] for r in rows),
    }


def quantiles(x, qs=(0.5, 0.9, 0.99, 0.999, 1.0)) -> dict[str, float]:
    import torch

    return {f"q{q:g}": float(torch.quantile(x, q)) if len(x) else 0.0 for q in qs}


def row_norm_stats(cfg, path: Path) -> list[dict]:
    """Per round: norms of the touched item rows of honest uploads (quantiles), and on the target
    row the honest touchers, their summed delta and its component against the attackers' push."""
    import torch

    from fedharness.simulation import Simulation
    from poisonlab.fed_run import build_task

    sim = Simulation(cfg, build_task(cfg))
    block, target = sim.task.row_blocks(sim.model)[0], sim.task.targets[0]
    g, out = sim.initial_global(), []
    for r in range(1, cfg.federation.rounds + 1):
        start = time.perf_counter()
        plan = sim.plan(r)
        local_vecs, info = sim.local_models(r, g, plan)
        rows = block.view(local_vecs - g)
        honest = torch.tensor([c not in plan.malicious for c in plan.sampled])
        norms = rows.norm(dim=2)
        h_sum, m_sum = rows[honest, target].sum(0), rows[~honest, target].sum(0)
        push = m_sum / m_sum.norm().clamp_min(1e-12)
        t_norms = norms[honest, target]
        rec = {"round": r, "honest_row_norm": quantiles(norms[honest][norms[honest] > 0]),
               "honest_upload_norm": quantiles((local_vecs - g)[honest].norm(dim=1)),
               "target_honest_touchers": int((t_norms > 0).sum()), "target_honest_row_norm": quantiles(t_norms[t_norms > 0]),
               "target_honest_sum_norm": float(h_sum.norm()), "target_honest_sum_along_push": float(h_sum @ push),
               "target_malicious_touchers": int((norms[~honest, target] > 0).sum()), "target_malicious_sum_norm": float(m_sum.norm())}
        g, record = sim.finish_round(r, g, plan, local_vecs, start, "inprocess", info)
        rec.update({m: record[m] for m in METRICS})
        out.append(rec)
        print(json.dumps(rec), flush=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return out


def centralised(cfg, epochs: int, path: Path) -> list[dict]:
    """The federated task's model with a user table, trained centrally on its leave-one-out split
    (He et al.'s recipe: Adam 1e-3, batch 256, fresh negatives each epoch) and scored on the same
    99-negative candidates; per epoch HR@10/NDCG@10 beside ItemPop (train popularity)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from fedrec import metrics, models
    from fedrec.local import pairs_of
    from poisonlab.fed_run import build_task

    task = build_task(cfg)
    torch.manual_seed(cfg.seed)
    model, split, rng = task.build_model(), task.split, np.random.default_rng(cfg.seed)
    users = torch.nn.Parameter(torch.randn(split.num_users, model.user_dim) * task.cfg.init_std)
    opt = torch.optim.Adam([users, *model.parameters()], lr=1e-3)
    pop = torch.from_numpy(split.popularity()).float()[task._candidates]
    item_pop = metrics.hit_ndcg(pop, task.cfg.hr_k)
    out = []
    for epoch in range(1, epochs + 1):
        p = pairs_of([task.profile(u, int(rng.integers(2**31))) for u in range(split.num_users)], split.num_items)
        order = torch.from_numpy(rng.permutation(len(p.key)))
        for batch in order.split(256):
            shared = {k: v for k, v in model.named_parameters() if k != "item"}
            u, i = users[p.client[batch]], model.item[p.item[batch]]
            s = (u * i).sum(1) if isinstance(model, models.MF) else models.ncf_scores(model, shared, u, i.unsqueeze(1)).squeeze(1)
            loss = F.binary_cross_entropy_with_logits(s, p.label[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            vec = torch.cat([v.detach().reshape(-1) for _, v in model.named_parameters()])
            hr, ndcg = metrics.hit_ndcg(task.all_scores(vec, users.detach()).gather(1, task._candidates), task.cfg.hr_k)
        out.append({"epoch": epoch, "hr@10": hr, "ndcg@10": ndcg, "itempop_hr@10": item_pop[0], "itempop_ndcg@10": item_pop[1]})
        print(json.dumps(out[-1]), flush=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return out


def table(results: list[dict]) -> str:
    """Markdown: one row per attack × defense, mean ± std over seeds."""
    lines = ["| attack | defense | seeds | ER@5 | ER@10 | ER@20 | HR@10 | NDCG@10 | wall s |", "|" + " --- |" * 9]
    cells: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        cells.setdefault((r["attack"], r["defense"]), []).append(r)
    for (attack, defense), rs in cells.items():
        def fmt(key: str) -> str:
            vals = [r[key] for r in rs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.mean(vals):.4f} ± {sd:.4f}"
        cols = [fmt(f"final_{m}") for m in METRICS]
        lines.append(f"| {attack} | {defense} | {len(rs)} | " + " | ".join(cols) + f" | {statistics.median(r['wall_time_s'] for r in rs):.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    import yaml

    torch.set_num_threads(args.threads)
    base = yaml.safe_load(args.config.read_text())
    base["federation"]["num_clients"] = 943 + max(a.get("num_attackers", 0) for a in ATTACKS.values())
    base["federation"]["clients_per_round"] = base["federation"]["num_clients"]
    (args.out / "cells").mkdir(parents=True, exist_ok=True)
    attacks = {**ATTACKS, **ROW_NORM_VARIANTS}
    if args.centralised is not None:
        cfg = cell_config(base, ATTACKS["clean"], DEFENSES["mean"], args.seeds[0], args)
        centralised(cfg, args.centralised, args.out / f"centralised__{cfg.task.params['model']}__s{args.seeds[0]}.jsonl")
        return
    if args.row_norm_stats:
        cfg = cell_config(base, attacks[args.attacks[0]], DEFENSES[args.defenses[0]], args.seeds[0], args)
        row_norm_stats(cfg, args.out / f"row_norms__{args.attacks[0]}__{args.defenses[0]}__s{args.seeds[0]}.jsonl")
        return
    results = []
    for seed in args.seeds:
        for attack in args.attacks:
            for defense in args.defenses:
                cfg = cell_config(base, attacks[attack], DEFENSES[defense], seed, args)
                res = {"attack": attack, "defense": defense, "seed": seed,
                       **run_cell(cfg, args.out / "cells" / f"{attack}__{defense}__s{seed}.jsonl")}
                results.append(res)
                print(json.dumps(res), flush=True)
                (args.out / "results.json").write_text(json.dumps(results, indent=1))
                (args.out / "table.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
