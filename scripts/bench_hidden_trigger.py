"""Hidden Trigger Backdoor (Saha et al., AAAI 2020) in its transfer-learning setting on MNIST.

Per (source→target pair, seed, poison count, ε): an extractor (SmallCNN layers to a ``--feature-dim``-wide penultimate
layer) is pretrained on the MNIST train digits (all, or those outside the pair), poisons are made from
target-class training images, and three last layers are fitted: on clean data (the paper's clean
control), with the poisons in place of their base images, and with those bases plus uniform ε-noise
(the paper's no-collision control). Metrics: ASR on patched source test images (→ target), clean
accuracy, and the share of *unpatched* source test images called target. Rows go to ``rows.jsonl`` (resumable), the summary to
``metrics.json``; all knobs map onto :class:`fedharness.attacks.hidden_trigger.TransferConfig`.

``--watermark-seeds N``: instead, the unlearning watermark in the fine-tuning provider setting
(:func:`unlearning_verify.watermarks.hidden_trigger.verify_transfer`): a public extractor pretrained on
the even-indexed training images (one per seed), the provider's users own the odd ones; noop vs head_retrain over N
seeds (from ``--watermark-first-seed``), verdicts with the family's assumption check and the pairs tested, to
``watermark.jsonl``; ``--pairs-marked K`` disjoint source→target pairs per owner, ``--pair`` picks each source class
(the key's, ``nearest_source`` or ``rehearsed_source``), ``--max-queries`` the budget.

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/bench_hidden_trigger.py --out runs/htba
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from fedharness.attacks.hidden_trigger import (BASES, OPTIMIZERS, TRIGGERS, TransferConfig, TriggerDesign, resize,
                                               run_transfer)
from fedharness.tasks.head_finetune import PretrainConfig, pretrain_extractor
from unlearning_verify.watermarks.hidden_trigger import PAIRS, TransferVerifyConfig, verify_transfer
from poisonlab import data
from poisonlab.runs import append_jsonl, read_jsonl, write_json

VARIANTS = ("clean", "hidden_trigger", "noise")


def grid(args: argparse.Namespace) -> list[dict]:
    """Headline (poisons, ε) on every pair × seed; the poison and ε sweeps on ``--sweep-seeds``."""
    points = []
    for pair in args.pairs:
        for seed in args.seeds:
            points.append({"pair": pair, "seed": seed, "poisons": args.poisons, "eps255": args.eps})
            if seed not in args.sweep_seeds or pair not in args.sweep_pairs:
                continue
            points += [{"pair": pair, "seed": seed, "poisons": n, "eps255": args.eps} for n in args.poison_sweep]
            points += [{"pair": pair, "seed": seed, "poisons": args.poisons, "eps255": e} for e in args.eps_sweep]
    unique = {tuple(sorted(p.items())): p for p in points}
    return list(unique.values())


def config(point: dict, args: argparse.Namespace) -> TransferConfig:
    source, target = (int(c) for c in point["pair"].split("-"))
    base = TransferConfig()
    design = {} if args.trigger_steps is None else {"steps": args.trigger_steps}
    attack = dataclasses.replace(base.attack, eps=point["eps255"] / 255, random_location=args.random_location,
                                 max_iterations=args.iterations, halve_every=max(args.iterations // 3, 1),
                                 optimizer=args.optimizer, lr=args.lr, relocate_every=args.relocate_every)
    return TransferConfig(source, target, point["poisons"], args.patch_size, args.classes, attack,
                          image_size=args.image_size, blocks=args.blocks, feature_dim=args.feature_dim,
                          bases=args.bases, pretrain_classes=args.pretrain_classes,
                          pretrain_epochs=args.pretrain_epochs, pretrain_shift=args.pretrain_shift,
                          trigger=args.trigger, trigger_draws=args.trigger_draws,
                          trigger_design=TriggerDesign(**design),
                          head_steps=args.head_steps,
                          head_l2=args.head_l2)


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["poisons"], r["eps255"]), []).append(r)
    out = []
    for (poisons, eps), rs in sorted(groups.items()):
        entry = {"poisons": poisons, "eps255": eps, "runs": len(rs), "pairs": sorted({r["pair"] for r in rs}),
                 "poison_share_of_target": float(np.mean([r["poisons"] / r["target_train_images"] for r in rs]))}
        for v in VARIANTS:
            for k in ("attack_success_rate", "clean_accuracy", "source_as_target"):
                vals = [r[v][k] for r in rs]
                entry[f"{v}_{k}"] = float(np.mean(vals))
                entry[f"{v}_{k}_std"] = float(np.std(vals))
        for k in ("pair_loss_start", "pair_loss_end", "patch_shift", "source_target_gap"):
            entry[k] = float(np.mean([r[k] for r in rs]))
        out.append(entry)
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--pairs", nargs="+", default=["3-8", "4-9", "7-1"], help="source-target digit pairs")
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(9)))
    p.add_argument("--sweep-seeds", nargs="*", type=int, default=[0])
    p.add_argument("--sweep-pairs", nargs="*", default=["3-8"])
    p.add_argument("--poisons", type=int, default=TransferConfig.poisons)
    p.add_argument("--eps", type=float, default=None,
                   help="ε in 1/255 units (default: TransferConfig's for the transfer bench, TransferVerifyConfig's "
                        "for the watermark)")
    p.add_argument("--poison-sweep", nargs="*", type=int, default=[50, 100, 200, 400])
    p.add_argument("--eps-sweep", nargs="*", type=float, default=[8.0, 32.0, 64.0])
    p.add_argument("--patch-size", type=int, default=TransferConfig.patch_size)
    p.add_argument("--classes", choices=["pair", "all"], default=TransferConfig.classes)
    p.add_argument("--iterations", type=int, default=TransferConfig().attack.max_iterations)
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=TransferConfig().attack.optimizer)
    p.add_argument("--lr", type=float, default=TransferConfig().attack.lr, help="step size (pixels for sign/adam)")
    p.add_argument("--image-size", type=int, default=TransferConfig.image_size, help="bilinear upsampling side")
    p.add_argument("--blocks", type=int, default=TransferConfig.blocks, help="extractor conv blocks (3 at 56)")
    p.add_argument("--feature-dim", type=int, default=TransferConfig.feature_dim, help="extractor feature width")
    p.add_argument("--head-steps", type=int, default=TransferConfig.head_steps, help="L-BFGS steps of the head")
    p.add_argument("--head-l2", type=float, default=TransferConfig.head_l2, help="the head's weight decay")
    p.add_argument("--bases", choices=sorted(BASES), default=TransferConfig.bases)
    p.add_argument("--pretrain-classes", choices=["all", "others"], default=TransferConfig.pretrain_classes)
    p.add_argument("--pretrain-epochs", type=int, default=TransferConfig.pretrain_epochs)
    p.add_argument("--pretrain-shift", type=int, default=TransferConfig.pretrain_shift,
                   help="extractor pretraining: random translation of up to N pixels")
    p.add_argument("--trigger", choices=sorted(TRIGGERS), default=TransferConfig.trigger)
    p.add_argument("--trigger-draws", type=int, default=TransferConfig.trigger_draws,
                   help="random triggers drawn; the one with the largest patch shift is used")
    p.add_argument("--trigger-steps", type=int, default=None,
                   help="designed trigger: Adam steps maximising the patch shift off the class direction (0: off; "
                        "default: TriggerDesign's for the transfer bench, TransferVerifyConfig's for the watermark)")
    p.add_argument("--random-location", action="store_true", help="patch at random places (paper's rand_loc)")
    p.add_argument("--relocate-every", type=int, default=TransferConfig().attack.relocate_every,
                   help="with --random-location: new patch places every N generation iterations (0: once)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pair", choices=list(PAIRS), default=TransferVerifyConfig.pair,
                   help="watermark: the key's source class, the owner's nearest_source or rehearsed_source")
    p.add_argument("--pairs-marked", type=int, default=TransferVerifyConfig.pairs,
                   help="watermark: disjoint source→target pairs the owner marks (tested by calibration alone)")
    p.add_argument("--max-queries", type=int, default=TransferVerifyConfig.max_queries, help="watermark query budget")
    p.add_argument("--watermark-seeds", type=int, default=0, help="run the watermark verification on N seeds")
    p.add_argument("--watermark-first-seed", type=int, default=0, help="the first of those N seeds")
    return p


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    ds = data.load("mnist")
    x, y = data.image_tensors(ds["train"])
    xt, yt = data.image_tensors(ds["test"])
    args.out.mkdir(parents=True, exist_ok=True)
    default_eps = TransferVerifyConfig.eps if args.watermark_seeds else TransferConfig().attack.eps
    args.eps = round(default_eps * 255, 6) if args.eps is None else args.eps
    if args.watermark_seeds:
        watermark(args, x, y, xt, yt)
        return
    rows = transfer_rows(args, x, y, xt, yt)
    write_json(args.out / "metrics.json", {"settings": {k: str(v) if isinstance(v, Path) else v
                                                         for k, v in vars(args).items()},
                                           "summary": summarise(rows)})
    print_summary(rows)


def transfer_rows(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor,
                  yt: torch.Tensor) -> list[dict]:
    """Every grid point's transfer result, resuming from ``rows.jsonl``: rows already there are kept."""
    rows_path = args.out / "rows.jsonl"
    rows = read_jsonl(rows_path) if rows_path.exists() else []
    done = {(r["pair"], r["seed"], r["poisons"], r["eps255"]) for r in rows}
    todo = [pt for pt in grid(args) if (pt["pair"], pt["seed"], pt["poisons"], pt["eps255"]) not in done]
    for point in tqdm(todo, desc="htba"):
        t0 = time.perf_counter()
        result = run_transfer(x, y, xt, yt, config(point, args), point["seed"])
        row = {**point, **dataclasses.asdict(result), "seconds": time.perf_counter() - t0}
        append_jsonl(rows_path, row)
        rows.append(row)
    return rows


def print_summary(rows: list[dict]) -> None:
    for s in summarise(rows):
        print(f"poisons {s['poisons']:4d} ({100 * s['poison_share_of_target']:.0f}%) ε {s['eps255']:4.0f}/255 "
              f"n={s['runs']:2d}: ASR clean {100 * s['clean_attack_success_rate']:5.1f} "
              f"htba {100 * s['hidden_trigger_attack_success_rate']:5.1f}±{100 * s['hidden_trigger_attack_success_rate_std']:.1f} "
              f"noise {100 * s['noise_attack_success_rate']:5.1f} | acc clean {100 * s['clean_clean_accuracy']:.1f} "
              f"htba {100 * s['hidden_trigger_clean_accuracy']:.1f} noise {100 * s['noise_clean_accuracy']:.1f} | "
              f"pair loss {s['pair_loss_start']:.0f}→{s['pair_loss_end']:.0f}, patch shift {s['patch_shift']:.0f}, "
              f"source-target gap {s['source_target_gap']:.0f}")


def watermark(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor) -> None:
    path = args.out / "watermark.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    x, xt = resize(x, args.image_size), resize(xt, args.image_size)
    public = torch.arange(len(x)) % 2 == 0
    pretrain = PretrainConfig(args.pretrain_epochs, blocks=args.blocks, feature_dim=args.feature_dim,
                              shift=args.pretrain_shift)
    params = {"size": args.patch_size, "optimizer": args.optimizer, "lr": args.lr, "max_iterations": args.iterations,
              "halve_every": max(args.iterations // 3, 1)}
    design = {} if args.trigger_steps is None else {"trigger_steps": args.trigger_steps}
    cfg = TransferVerifyConfig(eps=args.eps / 255, params=params, pair=args.pair, max_queries=args.max_queries,
                               pairs=args.pairs_marked, **design)
    seeds = range(args.watermark_first_seed, args.watermark_first_seed + args.watermark_seeds)
    for seed in tqdm(seeds, desc="watermark"):
        if any(r["seed"] == seed for r in rows):
            continue
        extractor = pretrain_extractor(x[public], y[public], (), pretrain, seed)
        for row in verify_transfer(extractor, x[~public], y[~public], xt, yt, cfg, seed):
            append_jsonl(path, row)
            rows.append(row)
    for r in sorted(rows, key=lambda r: (r["seed"], r["behaviour"])):
        pairs = " ".join(f"{p['source']}→{p['target']}{'*' if p['tested'] else ''} {p['p_hat']:.2f}/{p['q_hat']:.2f}"
                         for p in r["pairs"])
        print(f"seed {r['seed']} {r['behaviour']:12s} {r['verdict']:12s} queries {r['queries']:3d} tested "
              f"{r['tested']:12s} | p̂/q̂ {pairs} | marked {r['marked']} PSNR {r['invisibility']['psnr']:.1f}")
    for name in ("noop", "head_retrain"):
        rs = [r for r in rows if r["behaviour"] == name]
        counts = {v: sum(r["verdict"] == v for r in rs) for v in ("HONORED", "NOT HONORED", "INCONCLUSIVE")}
        print(f"{name}: {counts} over {len(rs)} seeds; queries {np.mean([r['queries'] for r in rs]):.1f}; "
              f"PSNR {np.mean([r['invisibility']['psnr'] for r in rs]):.1f} "
              f"SSIM {np.mean([r['invisibility']['ssim'] for r in rs]):.3f}")


if __name__ == "__main__":
    main()
