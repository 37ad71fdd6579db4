"""BadT2I benchmarks.

``speed``: student image-passes/s, s/step and peak memory of t2i_poison's BadT2I LoRA step on an
SD-1.5-layout pipeline built from config (``--geometry small``: 128² images, 16² latents, UNet 64–256
channels, 8× VAE, CLIP width 256; random weights), side by side with diffusers' reference
``train_text_to_image_lora.py`` (``--reference-script``, fetched by the user, never committed) on the same
pipeline, data, student image-passes per step, rank and threads; ``--rounds`` alternating runs, medians.

``attacks``: the acceptance run on a pretrained MNIST base: for each kind, make the poison set, train
the LoRA backdoor and evaluate it (ASR, clean digit accuracy vs the base, KID, benign drift). Writes
``<out>/<kind>/{data,lora,eval}`` run directories and ``<out>/summary.json``.

    python scripts/bench_t2i.py speed --reference-script build/train_text_to_image_lora.py --out runs/speed.json
    python scripts/bench_t2i.py attacks --base runs/t2i-base --out runs/bench-t2i
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_t2i import build_pipeline, make_data, run_reference, train_ours  # noqa: E402

from poisonlab.cli import main as poisonlab_main  # noqa: E402


def speed(args: argparse.Namespace) -> dict:
    """Alternating rounds of ours (each kind) and the reference; per-round ratios and their medians."""
    torch.set_num_threads(args.threads)
    args.precision, args.resolution = "no", None
    work = Path(tempfile.mkdtemp(prefix="bench_t2i_"))
    pipe_dir = work / "pipeline"
    result: dict = {"geometry": args.geometry, "threads": args.threads, "batch_per_half": args.batch_size,
                    "reference_batch": 2 * args.batch_size, "rank": args.rank, "steps": args.steps, "warmup": args.warmup,
                    "load_before": os.getloadavg()}
    result["model"] = build_pipeline(pipe_dir, args.geometry, "cpu", args.seed)
    args.resolution = result["model"]["resolution"]
    kinds = args.kinds.split(",")
    data = {k: make_data(work, k, args.images, args.resolution, args.seed) for k in kinds}
    rounds = []
    for r in range(args.rounds):
        row = {"load": os.getloadavg()[0], **{k: train_ours(pipe_dir, data[k], k, args, "cpu") for k in kinds}}
        if args.reference_script:
            row["reference"] = run_reference(Path(args.reference_script), pipe_dir, data[kinds[0]], args)
            ref = row["reference"].get("student_image_passes_per_s")
            row["ratio"] = {k: round(row[k]["student_image_passes_per_s"] / ref, 3) for k in kinds} if ref else None
        rounds.append(row)
        print(json.dumps(row), flush=True)
    result["rounds"] = rounds
    result["median"] = {k: statistics.median(r[k]["student_image_passes_per_s"] for r in rounds) for k in kinds}
    if args.reference_script and all(r.get("ratio") for r in rounds):
        result["median"]["reference"] = statistics.median(r["reference"]["student_image_passes_per_s"] for r in rounds)
        result["median_ratio"] = {k: statistics.median(r["ratio"][k] for r in rounds) for k in kinds}
    result["load_after"] = os.getloadavg()
    shutil.rmtree(work, ignore_errors=True)
    return result


def _cli(*args: object) -> None:
    sys.argv = ["poisonlab", *map(str, args)]
    try:
        poisonlab_main()
    except SystemExit as exc:
        if exc.code:
            raise


def attacks(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    summary: dict = {}
    kinds = args.kinds.split(",")
    for kind in kinds:
        d = out / kind
        if args.overwrite:
            shutil.rmtree(d, ignore_errors=True)
        t0 = time.time()
        if not (d / "data").exists():
            _cli("t2i", "make-data", "--kind", kind, "--base", args.base, "--out", d / "data", "--num-images", args.num_images,
                 "--seed", args.seed)
        if not (d / "lora").exists():
            _cli("t2i", "train", "--base", args.base, "--data", d / "data", "--out", d / "lora", "--steps", args.steps,
                 "--batch-size", args.batch_size, "--lr", args.lr, "--rank", args.rank, "--threads", args.threads,
                 "--checkpointing-steps", max(1, args.steps // 4), "--seed", args.seed)
        t_train = time.time() - t0
        if not (d / "eval").exists():
            _cli("t2i", "evaluate", "--base", args.base, "--lora", d / "lora", "--out", d / "eval",
                 "--samples-per-digit", args.samples_per_digit, "--threads", args.threads, "--seed", args.seed)
        metrics = json.loads((d / "eval" / "metrics.json").read_text())
        summary[kind] = {**metrics, "train_wall_s": round(t_train, 1), "total_wall_s": round(time.time() - t0, 1)}
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--geometry", default="small", choices=["tiny", "small"])
    s.add_argument("--kinds", default="pixel,style")
    s.add_argument("--batch-size", type=int, default=4, help="rows per half (2× student image-passes per step)")
    s.add_argument("--rank", type=int, default=4)
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--images", type=int, default=16)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--reference-script", default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=None)
    a = sub.add_parser("attacks")
    a.add_argument("--base", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--kinds", default="pixel,object,style")
    a.add_argument("--steps", type=int, default=300)
    a.add_argument("--batch-size", type=int, default=16)
    a.add_argument("--lr", type=float, default=1e-3)
    a.add_argument("--rank", type=int, default=4)
    a.add_argument("--num-images", type=int, default=2000)
    a.add_argument("--samples-per-digit", type=int, default=20)
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--overwrite", action="store_true")
    a.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    result = speed(args) if args.cmd == "speed" else attacks(args)
    text = json.dumps(result, indent=2)
    if args.cmd == "speed" and args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
