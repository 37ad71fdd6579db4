"""Sweep for the LoRA BadT2I recipe on the lab's MNIST base (issue 14, acceptance 1).

Each trial makes the kind's poison set (MNIST train digits at the base's resolution), trains the LoRA
backdoor with ``t2i_poison.train.fit`` (teacher = the same UNet with its adapters disabled) and
evaluates it with ``t2i_poison.evaluate.evaluate_backdoor`` on several evaluation seeds. Knobs: rank
and alpha, LoRA targets (attention only, or attention + the resnets' convolutions and time-embedding
projections, all through peft), learning rate, steps, λ and the share of L_reg rows on the empty caption
(``reg_uncond``: the unconditional branch that classifier-free guidance samples with). Object leakage = the share of *clean*
source-digit prompts drawn as the target digit (base model as control).

Results go to ``<out>/results.jsonl`` (one line per trial, finished trials are skipped on a rerun) and
a markdown table on stdout.

    python scripts/bench_t2i_lora_recipe.py --base runs/t2i-base --out runs/bench-lora-recipe \\
        --kinds pixel,object,style [--ranks 8,16 --targets attn,xattn,attn+conv --lrs 1e-3,3e-3 --steps 250 \\
        --lams 0.1 --reg-unconds 0,0.5 --reg-paireds 0,0.25]     # omitted: TrainConfig's defaults
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from poisonlab import data
from poisonlab.t2i_run import CLASSIFIER_DIR
from t2i_poison.base_model import DIGIT_WORDS, caption, resize_digits
from t2i_poison.pipelines import load_pipeline
from t2i_poison.digit_classifier import load_classifier
from t2i_poison.evaluate import EvalConfig, digit_labels, evaluate_backdoor, paired_drop
from t2i_poison.poison_data import checkerboard_patch, make_poison_set
from t2i_poison.train import LORA_WEIGHTS, TrainConfig, fit, load_poison_set
from t2i_poison.train_config import LORA_TARGET_MODULES

TARGETS = {
    "attn": None,  # train.py's default: the attention projections
    "xattn": r".*attn2\.(to_q|to_k|to_v|to_out\.0)$",  # cross-attention only (where a text trigger acts)
    "attn+conv": LORA_TARGET_MODULES,
    "attn+conv+temb": LORA_TARGET_MODULES.replace("conv_shortcut", "conv_shortcut|time_emb_proj|conv_in|conv_out"),
}
SOURCE, TARGET = "zero", "seven"


def poison_set(kind: str, out: Path, n: int, resolution: int, seed: int) -> Path:
    """The kind's poison imagefolder from the first ``n`` MNIST train digits (written once per kind)."""
    path = out / "data" / kind
    if (path / "metadata.jsonl").is_file():
        return path
    x, y = data.image_tensors(data.load("mnist")["train"])
    images = list((resize_digits(x[:n], resolution)[:, 0].numpy() * 255).round().astype(np.uint8))
    kwargs: dict = {"patch": checkerboard_patch(4)} if kind == "pixel" else {}
    if kind == "object":
        kwargs.update(source_word=SOURCE, target_word=TARGET)
    if kind == "style":
        kwargs.update(style_text=" in inverted colours", style_prefix=False)
    make_poison_set(kind, images, [caption(int(v)) for v in y[:n]], path, "sks", seed=seed, **kwargs)
    return path


def sidecar_extra(kind: str) -> dict:
    if kind == "pixel":
        return {"patch": {"top": 0, "left": 0, "pixels": checkerboard_patch(4).pixels.tolist()}}
    return {"source_word": SOURCE, "target_word": TARGET}


def leakage(images: dict[str, torch.Tensor], classifier, per_digit: int) -> dict:
    """Clean "digit zero" prompts drawn as a seven: backdoored model and base (object backdoor)."""
    rows = slice(DIGIT_WORDS.index(SOURCE) * per_digit, (DIGIT_WORDS.index(SOURCE) + 1) * per_digit)
    target = DIGIT_WORDS.index(TARGET)
    return {f"leak_{m}": float((classifier.predict(images[f"{m}_clean"][rows]) == target).float().mean()) for m in ("bd", "base")}


def run_trial(trial: dict, args: argparse.Namespace, classifier, real: torch.Tensor, base_cache: dict) -> dict:
    kind = trial["kind"]
    base = load_pipeline(args.base)
    data_dir = poison_set(kind, args.out, args.num_images, base.unet.config.sample_size, args.seed)
    run_dir = args.out / "runs" / trial["name"]
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = TrainConfig(kind=kind, trigger="sks", mode="lora", rank=trial["rank"], lora_alpha=trial["alpha"],
                      lora_target_modules=TARGETS[trial["targets"]], learning_rate=trial["lr"],
                      max_train_steps=trial["steps"], lam=trial["lam"], reg_uncond=trial["reg_uncond"],
                      reg_paired=trial.get("reg_paired", 0.0),
                      train_batch_size=args.batch_size, checkpointing_steps=10**6, seed=args.seed)
    start = time.perf_counter()
    sidecar = fit(base, load_poison_set(data_dir, base.unet.config.sample_size, 1), cfg, run_dir,
                  base_name=str(args.base), extra_sidecar=sidecar_extra(kind))
    train_s = time.perf_counter() - start
    per_seed, correct = [], {"base": [], "bd": []}
    labels = digit_labels(args.samples_per_digit)
    for seed in args.eval_seeds:
        ev = EvalConfig(samples_per_digit=args.samples_per_digit, num_inference_steps=args.inference_steps, seed=seed)
        metrics, images = evaluate_backdoor(load_pipeline(args.base), run_dir, sidecar, classifier, real, ev,
                                            base_cache.get((kind, seed)))
        base_cache[(kind, seed)] = {k: images[k] for k in ("base_clean", "base_triggered")}
        for m in correct:
            correct[m].append(classifier.predict(images[f"{m}_clean"]) == labels)
        if kind == "object":
            metrics.update(leakage(images, classifier, args.samples_per_digit))
        per_seed.append(metrics)
    keys = ["attack_success_rate", "asr_base_triggered", "bd_clean_accuracy", "base_clean_accuracy", "asr_bd_clean"]
    keys += ["leak_bd", "leak_base"] if kind == "object" else []
    summary = {k: statistics.mean(m[k] for m in per_seed) for k in keys}
    summary["asr_min_over_seeds"] = min(m["attack_success_rate"] for m in per_seed)
    summary["accuracy_drop"], *ci = paired_drop(torch.cat(correct["base"]), torch.cat(correct["bd"]))
    summary["accuracy_drop_ci95"] = ci
    summary["per_digit_bd"], summary["per_digit_base"] = (
        [round(float(v), 3) for v in torch.cat(correct[m]).float().reshape(-1, 10, args.samples_per_digit).mean((0, 2))]
        for m in ("bd", "base"))
    lora_file = run_dir / LORA_WEIGHTS
    return {**trial, **summary, "train_s": round(train_s, 1), "eval_seeds": args.eval_seeds,
            "lora_bytes": lora_file.stat().st_size, "per_seed": per_seed}


def trials(args: argparse.Namespace) -> list[dict]:
    grid = itertools.product(args.kinds, args.ranks, args.targets, args.lrs, args.steps, args.lams, args.reg_unconds,
                             args.reg_paireds)
    out = []
    for kind, rank, targets, lr, steps, lam, uncond, paired in grid:
        steps = steps or TrainConfig(kind=kind).for_kind().max_train_steps  # omitted: the kind's default
        alpha = rank * args.alpha_ratio
        name = f"{kind}-r{rank}-a{alpha:g}-{targets}-lr{lr:g}-s{steps}-lam{lam:g}" + (f"-u{uncond:g}" if uncond else "")
        name += f"-p{paired:g}" if paired else ""
        out.append({"name": name, "kind": kind, "rank": rank, "alpha": int(alpha), "targets": targets, "lr": lr,
                    "steps": steps, "lam": lam, "reg_uncond": uncond, "reg_paired": paired})
    return out


def drop(r: dict) -> str:
    """The paired accuracy drop in points with its 95 % interval (pooled over the evaluation seeds)."""
    low, high = r.get("accuracy_drop_ci95", (float("nan"),) * 2)
    return f"{100 * r['accuracy_drop']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def table(rows: list[dict]) -> str:
    head = "| trial | ASR (min seed) | base ASR | clean acc bd / base | drop [95 % CI] (points) | leak bd / base | train s |"
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        leak = f"{r['leak_bd']:.2f} / {r['leak_base']:.2f}" if "leak_bd" in r else "–"
        lines.append(
            f"| {r['name']} | {r['attack_success_rate']:.3f} ({r['asr_min_over_seeds']:.2f}) | {r['asr_base_triggered']:.2f} "
            f"| {r['bd_clean_accuracy']:.3f} / {r['base_clean_accuracy']:.3f} | {drop(r)} | {leak} | {r['train_s']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", type=Path, required=True, help="Lab base pipeline directory with classifier/.")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--kinds", type=lambda s: s.split(","), default=["pixel", "object", "style"])
    d = TrainConfig()  # every default of a trial is the training default
    p.add_argument("--ranks", type=lambda s: [int(v) for v in s.split(",")], default=[d.rank])
    p.add_argument("--alpha-ratio", type=float, default=1.0, help="lora_alpha = ratio × rank.")
    p.add_argument("--targets", type=lambda s: s.split(","), default=["attn+conv"], help=f"any of {', '.join(TARGETS)}")
    p.add_argument("--lrs", type=lambda s: [float(v) for v in s.split(",")], default=[d.learning_rate])
    p.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")], default=[d.max_train_steps])
    p.add_argument("--lams", type=lambda s: [float(v) for v in s.split(",")], default=[d.lam])
    p.add_argument("--reg-unconds", type=lambda s: [float(v) for v in s.split(",")], default=[d.reg_uncond],
                   help="Shares of L_reg rows on the empty caption (TrainConfig.reg_uncond).")
    p.add_argument("--reg-paireds", type=lambda s: [float(v) for v in s.split(",")], default=[d.reg_paired],
                   help="Shares of L_reg rows on the backdoor rows' latents, trigger-free (TrainConfig.reg_paired).")
    p.add_argument("--batch-size", type=int, default=d.train_batch_size)
    p.add_argument("--num-images", type=int, default=1000)
    p.add_argument("--eval-seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    ev = EvalConfig()  # the evaluation of `t2i evaluate`: generations per digit and seed, DDIM steps
    p.add_argument("--samples-per-digit", type=int, default=ev.samples_per_digit)
    p.add_argument("--inference-steps", type=int, default=ev.num_inference_steps)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.jsonl"
    done = {json.loads(line)["name"]: json.loads(line) for line in results_file.open()} if results_file.is_file() else {}
    classifier = load_classifier(args.base / CLASSIFIER_DIR)
    real, _ = data.image_tensors(data.load("mnist")["test"])
    rows, base_cache = [], {}
    for trial in trials(args):
        if trial["name"] not in done:
            done[trial["name"]] = run_trial(trial, args, classifier, real[:2000], base_cache)
            with results_file.open("a") as f:
                f.write(json.dumps(done[trial["name"]]) + "\n")
            print(table([done[trial["name"]]]).splitlines()[-1], flush=True)
        rows.append(done[trial["name"]])
    print(table(rows))


if __name__ == "__main__":
    main()
