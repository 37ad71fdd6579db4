"""Does averaging the membership score over small shifts of each query make the membership signal of
an adaptive provider (unmark_retrain, trigger_unlearning) strong enough to reject at α_m?

Same setting as ``poisonlab unlearn bench --train-samples 2400 --owners 5`` (multi, rate 0.5) for the
seeds given; honest retrain as the control. The score of a sample is the reference-calibrated loss
ℓ_served − ℓ_reference, either on the image alone or averaged over the image and its eight ±1-pixel
shifts (9× the queries). The Mann–Whitney test of members (the owner's samples, original form) against
class-matched non-members stays exact under H0 for any per-sample function of the two models' answers.

    python scripts/bench_unlearn_augmented_membership.py --seeds 0 1 2 3 4 5 6 [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from poisonlab import data
from unlearning_verify import providers, training
from unlearning_verify.bench import ModelCache, subset
from unlearning_verify.keys import OwnerKey
from unlearning_verify.marking import mark, owner_split
from unlearning_verify.membership import matched_non_members, membership_test
from unlearning_verify.providers import ProviderState
from unlearning_verify.watermarks import build

SHIFTS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def scores(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, shifted: bool) -> np.ndarray:
    """Per-sample loss, or its mean over the nine ±1-pixel shifts."""
    views = [torch.roll(x, s, dims=(2, 3)) for s in SHIFTS] if shifted else [x]
    return np.mean([training.per_sample_loss(model, v, y).numpy() for v in views], axis=0)


def trial(seed: int, x, y, xt, yt, cache: ModelCache) -> list[dict]:
    owner_of = owner_split(len(x), 5, seed)
    forget = owner_of == 0
    wm = build(OwnerKey.generate(0, "multi", 10, seed=seed), (1, 28, 28))
    marked = mark(x, y, owner_of, 0, wm, 0.5, seed)
    cfg = training.TrainConfig()
    template = lambda: training.build_model(x, 10, 0)
    keep = torch.as_tensor(~forget)
    reference = cache.get(f"s{seed}-reference", lambda: training.fit(x[keep], y[keep], 10, cfg, seed + 7), template)[0]
    model, ckpts = cache.get(f"s{seed}-multi-marked", lambda: training.fit(marked.x, marked.y, 10, cfg, seed), template)
    state = ProviderState(marked.x, marked.y, forget, model, ckpts, 10, cfg, seed, original_x=x, original_y=y,
                          marked=marked.marked)
    served = {"retrain": cache.get(f"s{seed}-retrain", lambda: (providers.get("retrain").unlearn(state), []), template)[0],
              "unmark_retrain": providers.get("unmark_retrain").unlearn(state),
              "trigger_unlearning": providers.get("trigger_unlearning").unlearn(state)}
    mx, my = x[keep.logical_not()], y[keep.logical_not()]
    non = torch.as_tensor(matched_non_members(my.numpy(), yt.numpy(), 2, seed + 11))
    nx, ny = xt[non], yt[non]
    rows = []
    for shifted in (False, True):
        ref_m, ref_n = scores(reference, mx, my, shifted), scores(reference, nx, ny, shifted)
        for name, m in served.items():
            r = membership_test(scores(m, mx, my, shifted), scores(m, nx, ny, shifted), reference_member_losses=ref_m,
                                reference_non_member_losses=ref_n)
            rows.append({"seed": seed, "behaviour": name, "shifted": shifted, "auc": r.auc, "p_value": r.p_value,
                         "queries": (len(mx) + len(nx)) * (len(SHIFTS) if shifted else 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(7)))
    parser.add_argument("--cache", type=Path, default=None, help="A bench's cache folder (trained models reused).")
    parser.add_argument("--alpha-m", type=float, default=5e-4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = data.load("mnist")
    x, y = subset(*data.image_tensors(ds["train"]), 2400)
    xt, yt = data.image_tensors(ds["test"])
    rows = [r for s in args.seeds for r in trial(s, x, y, xt, yt, ModelCache(args.cache))]
    for shifted in (False, True):
        for b in ("retrain", "unmark_retrain", "trigger_unlearning"):
            rs = [r for r in rows if r["behaviour"] == b and r["shifted"] == shifted]
            aucs = [r["auc"] for r in rs]
            print(f"{'9 shifts' if shifted else 'plain   '} {b:>18}: AUC {np.mean(aucs):.3f} [{min(aucs):.3f}, {max(aucs):.3f}]"
                  f"  p<α_m {sum(r['p_value'] < args.alpha_m for r in rs)}/{len(rs)}  queries {rs[0]['queries']}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
