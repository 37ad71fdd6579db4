"""BadT2I benchmarks.

``speed``: s/step and peak memory of one BadT2I LoRA step for the three kinds, on the MNIST base geometry
(CPU) and, where CUDA is present, at Stable Diffusion 1.5 geometry (random weights) in bf16 and fp16.

``attacks``: the acceptance run on a pretrained MNIST base: for each kind, make the poison set, train
the LoRA backdoor and evaluate it (ASR, clean digit accuracy vs the base, KID, benign drift). Writes
``<out>/<kind>/{data,lora,eval}`` run directories and ``<out>/summary.json``.

    python scripts/bench_t2i.py speed --out runs/bench-t2i-speed.json
    python scripts/bench_t2i.py attacks --base runs/t2i-base --out runs/bench-t2i
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from poisonlab.cli import main as poisonlab_main
from t2i_poison.badt2i_losses import BadT2IBatch, badt2i_loss
from t2i_poison.base_model import BaseModelConfig, build_unet
from t2i_poison.train import lora_config, teacher_mode

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8,
)


def step_time(unet: UNet2DConditionModel, kind: str, batch: int, text_len: int, dtype: torch.dtype, device: str,
              steps: int) -> dict:
    """Median seconds of one BadT2I LoRA step (teacher = adapters off) and the peak memory."""
    unet.requires_grad_(False).to(device, dtype)
    unet.add_adapter(lora_config(4))
    for p in unet.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    c, s, d = unet.config.in_channels, unet.config.sample_size, unet.config.cross_attention_dim
    opt = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=1e-4)
    sched = DDPMScheduler(num_train_timesteps=1000)
    x = lambda: torch.randn(batch, c, s, s, device=device, dtype=dtype)
    e = lambda: torch.randn(batch, text_len, d, device=device, dtype=dtype)
    b = BadT2IBatch(bkd_latents=x(), bkd_text=e(), reg_latents=x(), reg_text=e(), bkd_target_text=e())
    student = lambda z, t, cond: unet(z, t, encoder_hidden_states=cond).sample

    def teacher(z, t, cond):
        with teacher_mode(unet):
            return unet(z, t, encoder_hidden_states=cond).sample

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            loss, _ = badt2i_loss(kind, student, teacher, sched, b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() / 2**20) if device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"s_per_step": sorted(times)[len(times) // 2], "peak_mem_mib": round(peak, 1),
            "peak_kind": "cuda allocated" if device == "cuda" else "process max RSS"}


def speed(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    results: dict = {"cpu_threads": args.threads}
    for kind in ("pixel", "object", "style"):
        unet = build_unet(BaseModelConfig())
        results[f"mnist_base/{kind}/cpu_fp32"] = step_time(unet, kind, 16, 16, torch.float32, "cpu", args.steps)
    if torch.cuda.is_available():
        for dtype_name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            for kind in ("pixel", "object", "style"):
                torch.manual_seed(0)
                unet = UNet2DConditionModel(**SD15_UNET)
                results[f"sd15/{kind}/cuda_{dtype_name}"] = step_time(unet, kind, 1, 77, dtype, "cuda", args.steps)
    else:
        results["sd15"] = "skipped: no CUDA device on this machine"
    return results


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
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--threads", type=int, default=1)
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
