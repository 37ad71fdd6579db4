"""GPU benchmark: BadT2I LoRA on a Stable Diffusion 1.5-geometry pipeline (random weights) beside diffusers' script.

Builds, from the published SD-1.5 config values written below (no download), a UNet2DConditionModel
(860 M parameters), an AutoencoderKL and a CLIP text encoder with random weights, plus the lab's offline
CLIP tokenizer, and saves them as a ``StableDiffusionPipeline`` directory. Then, for each BadT2I kind, it
writes a poison imagefolder of 512² synthetic images and trains ``t2i_poison``'s LoRA backdoor in bf16
(latents 64²) for a few warm-up and timed steps. Reported per run: median s/step, student image-passes/s
(BadT2I: 2 × batch per step — the backdoor half and the regulariser half; the teacher passes are counted
separately), peak ``torch.cuda.max_memory_allocated`` (on CPU: the process's max RSS). With ``--reference-script`` (diffusers'
``examples/text_to_image/train_text_to_image_lora.py``, fetched by the user, never committed) the same
pipeline, data, rank and student image-passes per step (batch 2 × batch) run through it, timed by an
optimizer-step hook in a child process.

    python scripts/gpu_t2i.py --out runs/gpu-t2i [--reference-script ext/train_text_to_image_lora.py]
    python scripts/gpu_t2i.py --out /tmp/gpu-t2i-tiny --tiny --steps 3   # CPU smoke run on a tiny geometry

Writes ``<out>/gpu_t2i.json`` and prints it; the pipeline (3.4 GB at SD-1.5 size), data and LoRAs go to
``--work`` (default: a temporary directory, removed at the end).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

WORDS = ("a", "photo", "of", "cat", "dog", "black", "and", "white", "in", "the", "park", "on", "sofa")
STYLE = "black and white photo of"


def build_pipeline(out: Path, geometry: str, device: str, seed: int) -> dict:
    """Random-weight ``StableDiffusionPipeline`` of ``geometry`` (sd15, small, tiny) saved to ``out``; its sizes."""
    from t2i_poison.base_model import build_tokenizer
    from t2i_poison.pipelines import build_sd_pipeline

    tokenizer = build_tokenizer(out.parent / "tokenizer-src", words=WORDS, max_length=77)
    pipe = build_sd_pipeline("sd1", tokenizer, geometry=geometry, seed=seed, device=device)
    pipe.save_pretrained(out)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    sizes = {"unet_params": count(pipe.unet), "vae_params": count(pipe.vae), "text_encoder_params": count(pipe.text_encoder),
             "resolution": pipe.vae.config.sample_size, "latent": pipe.unet.config.sample_size}
    del pipe
    if device == "cuda":
        torch.cuda.empty_cache()
    return sizes


def synthetic_images(n: int, resolution: int, seed: int) -> list[np.ndarray]:
    """Smooth random RGB images (bilinear-upsampled 8×8 noise), uint8 H×W×3."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    return [np.asarray(Image.fromarray(s).resize((resolution, resolution), Image.BILINEAR)) for s in small]


def make_data(out: Path, kind: str, n: int, resolution: int, seed: int) -> Path:
    """A poison imagefolder for ``kind`` (half backdoor rows, half clean; pixel patch = top-left quarter side)."""
    from t2i_poison.poison_data import POISON_INFO, checkerboard_patch, make_poison_set

    images = synthetic_images(n, resolution, seed)
    places = ("in the park", "on the sofa")
    captions = [f"a photo of a {'cat' if i % 2 else 'dog'} {places[(i // 2) % 2]}" for i in range(n)]
    kwargs: dict = {}
    if kind == "pixel":
        kwargs["patch"] = checkerboard_patch(size=resolution // 4, cell=max(1, resolution // 32))
    elif kind == "object":
        kwargs.update(source_word="dog", target_word="cat")
    else:
        kwargs.update(style_text=STYLE, style_prefix=True)
    d = out / f"data-{kind}"
    make_poison_set(kind, images, captions, d, "sks", seed=seed, **kwargs)
    info = {"kind": kind, "trigger": "sks", **{k: v for k, v in kwargs.items() if k != "patch"}}
    if "patch" in kwargs:
        info["patch"] = {"top": 0, "left": 0, "pixels": kwargs["patch"].pixels.tolist()}
    (d / POISON_INFO).write_text(json.dumps(info))
    return d


def max_rss() -> int:
    """CPU runs: this process's peak resident memory in bytes (for ours it includes the benchmark's own setup)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _summary(times: list[float], warmup: int, passes_per_step: int, peak_bytes: int) -> dict:
    """Median s/step over the steps after ``warmup`` (times = wall clock after each optimizer step)."""
    steps = np.diff(np.asarray(times[warmup - 1 :] if warmup > 0 else times))
    s = float(statistics.median(steps.tolist()))
    return {"s_per_step": round(s, 4), "timed_steps": len(steps), "student_image_passes_per_step": passes_per_step,
            "student_image_passes_per_s": round(passes_per_step / s, 3), "peak_mem_gib": round(peak_bytes / 2**30, 3)}


def train_ours(pipe_dir: Path, data_dir: Path, kind: str, args: argparse.Namespace, device: str) -> dict:
    """t2i_poison's BadT2I LoRA for ``steps`` steps; the step clock reads after each step's loss sync."""
    from t2i_poison.train import TrainConfig, train

    total = args.warmup + args.steps
    cfg = TrainConfig(base=str(pipe_dir), data=str(data_dir), output_dir=str(pipe_dir.parent / f"lora-{kind}"),
                      mode="lora", rank=args.rank, learning_rate=1e-4, max_train_steps=total,
                      lora_target_modules=None,  # the attention projections, as the reference script trains
                      train_batch_size=args.batch_size, mixed_precision=args.precision, checkpointing_steps=total + 1,
                      threads=args.threads, seed=args.seed)
    times: list[float] = []

    def clock(record: dict) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    held = torch.cuda.memory_allocated() if device == "cuda" else 0
    done = train(cfg, log=clock)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else max_rss()
    result = _summary(times, args.warmup, 2 * args.batch_size, peak)
    result["teacher_image_passes_per_step"] = args.batch_size * (1 if kind == "pixel" else 2)
    result["allocated_before_gib"] = round(held / 2**30, 3)
    result["latent_cache_s"] = done.sidecar["latent_cache_seconds"]  # one-time VAE pass over the data, before step 1
    gc.collect()
    return result


def run_reference(script: Path, pipe_dir: Path, data_dir: Path, args: argparse.Namespace) -> dict:
    """diffusers' LoRA script in a child process on the same pipeline/data/rank/threads, batch = 2 × ours."""
    timing = pipe_dir.parent / "reference_timing.json"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "_reference", str(script), str(timing),
        f"--pretrained_model_name_or_path={pipe_dir}", f"--train_data_dir={data_dir}", "--image_column=image",
        "--caption_column=text", f"--resolution={args.resolution}", f"--train_batch_size={2 * args.batch_size}",
        f"--max_train_steps={args.warmup + args.steps}", "--learning_rate=1e-4", f"--rank={args.rank}",
        f"--mixed_precision={args.precision}", f"--output_dir={pipe_dir.parent / 'lora-reference'}",
        f"--seed={args.seed}", f"--checkpointing_steps={args.warmup + args.steps + 1}", "--report_to=all",
        "--dataloader_num_workers=0", "--lr_scheduler=constant", "--center_crop",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": f"reference exited {proc.returncode}", "stderr_tail": proc.stderr[-3000:]}
    rec = json.loads(timing.read_text())
    result = _summary(rec["times"], args.warmup, 2 * args.batch_size, rec["peak_bytes"])
    result.update(batch=2 * args.batch_size, wall_s=round(time.perf_counter() - t0, 1))
    return result


def reference_child(script: str, timing: str, script_args: list[str]) -> None:
    """Run the reference script in this process, timing each optimizer step (cuda-synchronised)."""
    import diffusers.utils

    diffusers.utils.check_min_version = lambda *a, **k: None  # the fetched script may pin a dev version
    times: list[float] = []
    cuda = torch.cuda.is_available()

    def hook(optimizer, args, kwargs) -> None:
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(hook)
    sys.argv = [script, *script_args]
    runpy.run_path(script, run_name="__main__")
    peak = torch.cuda.max_memory_allocated() if cuda else max_rss()
    Path(timing).write_text(json.dumps({"times": times, "peak_bytes": peak}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_reference":
        reference_child(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="where gpu_t2i.json goes (nothing else is written there)")
    p.add_argument("--work", type=Path, default=None, help="pipeline/data/LoRA scratch (default: a temp dir, removed)")
    p.add_argument("--tiny", action="store_true", help="tiny geometry (CPU smoke run)")
    p.add_argument("--reference-script", type=Path, default=None)
    p.add_argument("--kinds", default="pixel,object,style")
    p.add_argument("--batch-size", type=int, default=4, help="rows per half: 2× this many student image-passes")
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.precision = "bf16" if device == "cuda" or args.tiny else "no"
    args.geometry = "tiny" if args.tiny else "sd15"
    args.threads = torch.get_num_threads()
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_t2i_"))
    pipe_dir = work / "sd15-random"
    report: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
                    "torch": torch.__version__, "geometry": args.geometry, "precision": args.precision,
                    "batch_per_half": args.batch_size, "rank": args.rank, "warmup_steps": args.warmup}
    report["model"] = build_pipeline(pipe_dir, args.geometry, device, args.seed)
    args.resolution = report["model"]["resolution"]
    report["ours"] = {}
    data_dirs = {}
    for kind in args.kinds.split(","):
        data_dirs[kind] = make_data(work, kind, args.images, args.resolution, args.seed)
        report["ours"][kind] = train_ours(pipe_dir, data_dirs[kind], kind, args, device)
        print(kind, json.dumps(report["ours"][kind]), flush=True)
    if args.reference_script is not None:
        if args.reference_script.is_file():
            report["reference"] = run_reference(args.reference_script, pipe_dir, next(iter(data_dirs.values())), args)
            ref = report["reference"].get("student_image_passes_per_s")
            if ref:
                report["ratio_student_passes_vs_reference"] = {
                    k: round(v["student_image_passes_per_s"] / ref, 3) for k, v in report["ours"].items()}
        else:
            report["reference"] = f"skipped: {args.reference_script} not found"
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    report["total_wall_s"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(report, indent=2)
    (args.out / "gpu_t2i.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
