"""Our robust aggregators against Flower's built-ins on the same stacked updates (m × d).

For FedMedian, FedTrimmedAvg, Krum, MultiKrum and Bulyan: best and median wall time of ours (on
the stacked tensor) and of Flower's (its own helpers on the same rows, in its reply format), in
the same process, and the max absolute difference of the results. Bulyan is compared with
``iterative=False`` (Flower's one-shot Multi-Krum selection); the paper's iterative selection is
timed too. Writes JSON to --out.

    nice -n 10 .venv/bin/python scripts/bench_aggregators.py --m 100 --d 1000000 --out runs/bench_aggregators.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fedharness import aggregators
from fedharness.engines import flower_builtins as fb


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Best and median wall time over ``repeats`` calls (the machine is shared), and the last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times)), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--m", type=int, default=100)
    parser.add_argument("--d", type=int, default=1_000_000)
    parser.add_argument("--f", type=int, default=10, help="assumed attackers for Krum/Bulyan")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    u = rng.standard_normal((args.m, args.d), dtype=np.float32)
    u[: args.f] *= 5.0  # a few outlying rows, as attackers
    tu = torch.from_numpy(u)
    contents = fb.records(u)
    k = args.m - args.f
    median, trimmed = aggregators.get("median"), aggregators.get("trimmed_mean", beta=0.2)
    krum, multi_krum = aggregators.get("krum", f=args.f), aggregators.get("multi_krum", f=args.f, k=k)
    bulyan_flower, bulyan_paper = aggregators.get("bulyan", f=args.f, iterative=False), aggregators.get("bulyan", f=args.f)
    cases = [
        ("FedMedian", lambda: median(tu), lambda: fb.fed_median(u)),
        ("FedTrimmedAvg(0.2)", lambda: trimmed(tu), lambda: fb.fed_trimmed_avg(u, 0.2)),
        (f"Krum(f={args.f})", lambda: krum(tu), lambda: fb.multi_krum(contents, args.f, 1)),
        (f"MultiKrum(f={args.f}, k={k})", lambda: multi_krum(tu), lambda: fb.multi_krum(contents, args.f, k)),
        (f"Bulyan(f={args.f})", lambda: bulyan_flower(tu), lambda: fb.bulyan(contents, args.f)),
    ]
    rows = []
    for name, ours, flower in cases:
        t_ours, med_ours, r_ours = timed(ours, args.repeats)
        t_flower, med_flower, r_flower = timed(flower, args.repeats)
        diff = float(np.abs(r_ours.numpy() - np.asarray(r_flower)).max())
        rows.append({"rule": name, "ours_s": t_ours, "ours_median_s": med_ours, "flower_s": t_flower,
                     "flower_median_s": med_flower, "speedup": t_flower / t_ours, "max_abs_diff": diff})
        print(f"{name:28s} ours {t_ours:7.3f} s (median {med_ours:7.3f})  "
              f"flower {t_flower:7.3f} s (median {med_flower:7.3f})  "
              f"speed-up {t_flower / t_ours:6.2f}×  max|Δ| {diff:.2e}", flush=True)
    t_iter, med_iter, _ = timed(lambda: bulyan_paper(tu), args.repeats)
    rows.append({"rule": f"Bulyan(f={args.f}) paper (iterative Krum)", "ours_s": t_iter, "ours_median_s": med_iter})
    print(f"{'Bulyan iterative (paper)':28s} ours {t_iter:7.3f} s (median {med_iter:7.3f})")
    result = {"m": args.m, "d": args.d, "f": args.f, "threads": args.threads, "repeats": args.repeats,
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
              "torch": torch.__version__, "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
