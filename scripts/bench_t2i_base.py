"""Clean digit accuracy of the lab's MNIST text-to-image base against its pretraining cost (issue 18).

Pretrains the base with ``PretrainConfig`` (its defaults, the demo's recipe, unless overridden) and, at
every ``--eval-every`` steps, loads the EMA weights of that step's checkpoint into a copy of the pipeline
and measures clean-caption digit accuracy (``t2i_poison.evaluate.base_quality``: the lab's digit
classifier on 10 × ``--samples-per-digit`` generations) for each evaluation seed and guidance scale.
The classifier is trained once into ``<out>/classifier`` (``ClassifierConfig`` defaults of the demo).

    python scripts/bench_t2i_base.py --out runs/bench-t2i-base [--steps 600] [--lr 3e-3] \\
        [--channels 16,32,32] [--eval-every 100] [--eval-seeds 0,1,2] [--guidance 1,2]

Writes ``<out>/results.jsonl`` (one line per evaluated step: seconds of training so far, loss, accuracy per
seed and guidance) and prints a markdown table; the pipeline of the last step is saved in ``<out>/base``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import torch

from poisonlab import data
from t2i_poison.base_model import BaseModelConfig, PretrainConfig, build_pipeline, pretrain_steps, warm_up_text_encoder
from t2i_poison.digit_classifier import ClassifierConfig, DigitClassifier, load_classifier, train_classifier
from t2i_poison.evaluate import EvalConfig, base_quality


def classifier(out: Path, x: torch.Tensor, y: torch.Tensor) -> DigitClassifier:
    path = out / "classifier"
    if not (path / "model.safetensors").is_file():
        train_classifier(x, y, ClassifierConfig(epochs=3)).save(path)
    return load_classifier(path)


def ema_pipeline(pipe, checkpoint: Path):
    """A copy of ``pipe`` holding the EMA weights stored in ``checkpoint``."""
    ema = copy.deepcopy(pipe)
    modules = torch.nn.ModuleDict({"unet": ema.unet, "text_encoder": ema.text_encoder})
    modules.load_state_dict(torch.load(checkpoint, weights_only=True)["ema"])
    modules.eval().requires_grad_(False)
    return ema


def accuracies(pipe, clf: DigitClassifier, real: torch.Tensor, args: argparse.Namespace) -> dict[str, list[float]]:
    out = {}
    for g in args.guidance:
        out[f"g{g:g}"] = [
            base_quality(pipe, clf, real, EvalConfig(samples_per_digit=args.samples_per_digit, num_inference_steps=args.inference_steps,
                                                     guidance_scale=g, seed=seed, kid_subsets=5))[0]["clean_accuracy"]
            for seed in args.eval_seeds
        ]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--channels", type=lambda s: tuple(int(v) for v in s.split(",")), default=None, help="UNet block_out_channels.")
    p.add_argument("--text-warmup-steps", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    p.add_argument("--guidance", type=lambda s: [float(v) for v in s.split(",")], default=[1.0, 2.0])
    p.add_argument("--samples-per-digit", type=int, default=EvalConfig().samples_per_digit)
    p.add_argument("--inference-steps", type=int, default=EvalConfig().num_inference_steps)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    given = {"steps": args.steps, "lr": args.lr, "batch_size": args.batch_size, "text_warmup_steps": args.text_warmup_steps}
    model = BaseModelConfig(seed=args.seed, **({"block_out_channels": args.channels} if args.channels else {}))
    cfg = PretrainConfig(model=model, seed=args.seed, checkpoint_every=args.eval_every,
                         **{k: v for k, v in given.items() if v is not None})
    x, y = data.image_tensors(data.load("mnist")["train"])
    real, _ = data.image_tensors(data.load("mnist")["test"])
    args.out.mkdir(parents=True, exist_ok=True)
    clf = classifier(args.out, x, y)
    work = args.out / "base"
    shutil.rmtree(work, ignore_errors=True)
    torch.manual_seed(cfg.seed)
    pipe = build_pipeline(cfg.model, work / "tokenizer")
    start = time.perf_counter()
    warm_up_text_encoder(pipe, cfg)
    train_s, losses, rows = time.perf_counter() - start, [], []
    start = time.perf_counter()
    with (args.out / "results.jsonl").open("w") as log:
        for record in pretrain_steps(pipe, x, y, cfg, work / "checkpoints"):
            losses.append(record["loss"])
            if record["step"] % args.eval_every and record["step"] != cfg.steps:
                continue
            train_s += time.perf_counter() - start
            acc = accuracies(ema_pipeline(pipe, work / "checkpoints" / "checkpoint.pt"), clf, real[:1000], args)
            rows.append({"step": record["step"], "train_s": round(train_s, 1), "loss": statistics.mean(losses[-50:]),
                         "accuracy": acc, "load": os.getloadavg()[0]})
            log.write(json.dumps(rows[-1]) + "\n")
            log.flush()
            print(json.dumps(rows[-1]), flush=True)
            start = time.perf_counter()
    pipe.save_pretrained(work)
    shutil.rmtree(work / "checkpoints")
    keys = list(rows[-1]["accuracy"])
    print(f"\nrecipe {json.dumps({k: v for k, v in vars(cfg).items() if k != 'model'})}, channels {cfg.model.block_out_channels}, "
          f"{args.threads} thread(s), seeds {args.eval_seeds}")
    print("| step | train s | loss | " + " | ".join(f"acc {k} (mean, min)" for k in keys) + " | load |")
    print("|---" * (4 + len(keys)) + "|")
    for r in rows:
        cells = " | ".join(f"{statistics.mean(r['accuracy'][k]):.3f}, {min(r['accuracy'][k]):.2f}" for k in keys)
        print(f"| {r['step']} | {r['train_s']:.0f} | {r['loss']:.4f} | {cells} | {r['load']:.1f} |")


if __name__ == "__main__":
    main()
