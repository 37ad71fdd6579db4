"""Pixel BadT2I on a tiny Stable Diffusion 1.x pipeline pretrained here on MNIST captions (issue 14, acceptance 2).

The pipeline is diffusers' ``StableDiffusionPipeline`` with the tiny SD-1.x geometry of
``t2i_poison.pipelines.build_sd_pipeline`` (UNet2DConditionModel 32/64 channels with cross-attention at
the latent resolution, AutoencoderKL with one 2× downsampling, 4 latent channels, CLIP text encoder of
width 32), built from configs (nothing is downloaded) with the lab's offline caption tokenizer. The
learnable setup, all on MNIST resized to 16×16 RGB (grey replicated), captions "a handwritten digit seven":

1. the VAE: reconstruction MSE + a small KL term (``--kl``), then ``scaling_factor`` = 1/std of the
   latents (as SD chose 0.18215);
2. the text encoder: the lab base's caption warm-up (``base_model.warm_up_text_encoder``), so the ten
   captions are distinct;
3. UNet + text encoder: ε-prediction on the VAE latents (SD's scaled-linear schedule), 15 % dropped
   captions for classifier-free guidance, EMA of the weights.

Then the user's path on the saved pipeline: ``poisonlab t2i make-data --kind pixel`` (MNIST digits, the
4×4 checkerboard; ``--make-data-args "--patch-top 6 --patch-left 6"`` moves it off the border, which this
VAE learned to paint black: ``vae_patch_round_trip_mse`` in the results is the top-left patch's) → ``t2i train --mode lora`` → ``t2i evaluate`` (patch-region MSE
under 0.05 = success, the base on the same triggered prompts and starting latents as the control), for
each evaluation seed.

    python scripts/bench_t2i_sd_pixel.py --out runs/sd-mnist [--vae-steps 400] [--unet-steps 1500] \\
        [--make-data-args "--patch-top 6 --patch-left 6"] [--train-args "--steps 400"] [--eval-seeds 0,1,2] \\
        [--base runs/sd-mnist/base]        # reuse a pretrained pipeline

Writes ``<out>/base`` (the pipeline), ``<out>/data``, ``<out>/lora``, ``<out>/eval-<seed>`` and
``<out>/results.json``; finished stages are reused on a rerun.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from tqdm import tqdm

from poisonlab import data
from t2i_poison.base_model import (
    EMA, PretrainConfig, build_tokenizer, caption_batch, resize_digits, warm_up_text_encoder, warmup_cosine,
)
from t2i_poison.digit_pipeline import tokenize
from t2i_poison.pipelines import build_sd_pipeline


@dataclass
class SDPretrain:
    """The tiny SD-1.x MNIST pretraining (VAE, text warm-up, UNet); defaults are the measured run's."""

    side: int = 16
    vae_steps: int = 400
    vae_lr: float = 2e-3
    kl: float = 1e-5
    unet_steps: int = 1500
    unet_lr: float = 2e-3
    batch_size: int = 64
    caption_dropout: float = 0.15
    ema_decay: float = 0.995
    seed: int = 0


def mnist_rgb(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST train digits as (N, 3, side, side) in [−1, 1] and labels."""
    x, y = data.image_tensors(data.load("mnist")["train"])
    return (resize_digits(x, side) * 2 - 1).repeat(1, 3, 1, 1), y


def train_vae(vae, x: torch.Tensor, cfg: SDPretrain, gen: torch.Generator, progress) -> float:
    """Reconstruction + β·KL; returns the final reconstruction MSE; sets ``scaling_factor`` = 1/latent std."""
    vae.train().requires_grad_(True)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    sched = warmup_cosine(opt, PretrainConfig.warmup_steps, cfg.vae_steps)
    rec = torch.tensor(0.0)
    for _ in progress(range(cfg.vae_steps), "vae"):
        batch = x[torch.randint(0, len(x), (cfg.batch_size,), generator=gen)]
        post = vae.encode(batch).latent_dist
        out = vae.decode(post.mean + post.std * torch.randn(post.mean.shape, generator=gen)).sample
        rec = F.mse_loss(out, batch)
        loss = rec + cfg.kl * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        std = float(vae.encode(x[:512]).latent_dist.mean.std())
    vae.register_to_config(scaling_factor=1.0 / std)
    return float(rec.detach())


@torch.no_grad()
def patch_round_trip(vae, x: torch.Tensor) -> float:
    """Mean patch-region MSE of patched digits after a VAE round trip (can the latents carry the patch?)."""
    from t2i_poison.evaluate_sd import patch_region_mse
    from t2i_poison.poison_data import checkerboard_patch

    patch = checkerboard_patch(4)
    p = torch.from_numpy(patch.pixels.astype("float32") / 127.5 - 1)
    x = x.clone()
    x[:, :, : p.shape[0], : p.shape[1]] = p
    out = (vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1) + 1) / 2
    return float(patch_region_mse(out, patch.pixels, 0, 0).mean())


@torch.no_grad()
def posterior(vae, x: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [vae.encode(x[i : i + chunk]).latent_dist for i in range(0, len(x), chunk)]
    return torch.cat([p.mean for p in parts]), torch.cat([p.std for p in parts])


def train_unet(pipe, x: torch.Tensor, y: torch.Tensor, cfg: SDPretrain, gen: torch.Generator, progress) -> float:
    """ε-prediction on VAE latents with the captions (15 % empty), UNet and text encoder jointly; EMA weights kept."""
    from diffusers import DDPMScheduler

    mean, std = posterior(pipe.vae, x)
    scale = pipe.vae.config.scaling_factor
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    model = torch.nn.ModuleDict({"unet": pipe.unet, "text_encoder": pipe.text_encoder}).train().requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.unet_lr, weight_decay=0.0)
    sched = warmup_cosine(opt, PretrainConfig.warmup_steps, cfg.unet_steps)
    ema = EMA(model, cfg.ema_decay)
    caps = [""] + [c for c in caption_batch(torch.arange(10), torch.zeros(10, dtype=torch.bool), torch.zeros(10, dtype=torch.bool))]
    ids = tokenize(pipe.tokenizer, caps)
    loss = torch.tensor(0.0)
    for _ in progress(range(cfg.unet_steps), "unet"):
        idx = torch.randint(0, len(mean), (cfg.batch_size,), generator=gen)
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scale
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.caption_dropout
        rows = torch.where(drop, 0, y[idx] + 1)
        cond = pipe.text_encoder(ids)[0][rows]
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (cfg.batch_size,), generator=gen)
        loss = F.mse_loss(pipe.unet(noise_sched.add_noise(z0, noise, t), t, encoder_hidden_states=cond).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update(model)
    model.load_state_dict(ema.shadow)
    model.eval().requires_grad_(False)
    return float(loss.detach())


def pretrain(out: Path, cfg: SDPretrain, progress) -> dict:
    """Build, pretrain and save the tiny SD-1.x pipeline at ``out``; returns the pretraining record."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    pipe = build_sd_pipeline("sd1", build_tokenizer(out / "tokenizer", max_length=16), "tiny", seed=cfg.seed)
    x, y = mnist_rgb(cfg.side)
    start = time.perf_counter()
    vae_mse = train_vae(pipe.vae, x, cfg, gen, progress)
    vae_s = time.perf_counter() - start
    round_trip = patch_round_trip(pipe.vae, x[:256])
    warm_up_text_encoder(pipe, PretrainConfig(seed=cfg.seed))
    unet_loss = train_unet(pipe, x, y, cfg, gen, progress)
    pipe.save_pretrained(out)
    return {"vae_mse": vae_mse, "vae_patch_round_trip_mse": round_trip, "vae_s": round(vae_s, 1), "unet_loss": unet_loss,
            "pretrain_s": round(time.perf_counter() - start, 1), "scaling_factor": pipe.vae.config.scaling_factor,
            "config": cfg.__dict__}


def poisonlab(*args: str) -> None:
    """One ``poisonlab`` CLI call, as a user runs it."""
    subprocess.run([sys.executable, "-m", "poisonlab", *args], check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--vae-steps", type=int, default=SDPretrain.vae_steps)
    p.add_argument("--unet-steps", type=int, default=SDPretrain.unet_steps)
    p.add_argument("--num-images", type=int, default=1000, help="make-data: MNIST images in the poison set.")
    p.add_argument("--base", type=Path, default=None, help="Reuse this pretrained pipeline (default <out>/base, made here).")
    p.add_argument("--make-data-args", default="", help="Extra `poisonlab t2i make-data` flags (quoted).")
    p.add_argument("--train-args", default="", help="Extra `poisonlab t2i train` flags (quoted).")
    p.add_argument("--eval-args", default="", help="Extra `poisonlab t2i evaluate` flags (quoted).")
    p.add_argument("--eval-seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    record_file = args.out / "results.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}

    def progress(it: Iterator[int], desc: str) -> Iterator[int]:
        return tqdm(it, desc=desc, mininterval=10)

    base, pix, lora = args.base or args.out / "base", args.out / "data", args.out / "lora"
    if not (base / "model_index.json").is_file():
        cfg = SDPretrain(vae_steps=args.vae_steps, unet_steps=args.unet_steps, seed=args.seed)
        record["pretrain"] = pretrain(base, cfg, progress)
        record_file.write_text(json.dumps(record, indent=2))
    common = ["--threads", str(args.threads)]
    if not pix.is_dir():
        poisonlab("t2i", "make-data", "--kind", "pixel", "--base", str(base), "--out", str(pix),
                  "--num-images", str(args.num_images), "--seed", str(args.seed), *shlex.split(args.make_data_args))
    if not lora.is_dir():
        start = time.perf_counter()
        poisonlab("t2i", "train", "--base", str(base), "--data", str(pix), "--out", str(lora), "--mode", "lora",
                  "--seed", str(args.seed), *common, *shlex.split(args.train_args))
        record["train_s"] = round(time.perf_counter() - start, 1)
    record.update(base=str(base), make_data_args=args.make_data_args, train_args=args.train_args, eval_args=args.eval_args, evals={})
    for seed in args.eval_seeds:
        ev = args.out / f"eval-{seed}"
        if not ev.is_dir():
            poisonlab("t2i", "evaluate", "--base", str(base), "--lora", str(lora), "--out", str(ev), "--seed", str(seed),
                      *common, *shlex.split(args.eval_args))
        record["evals"][seed] = json.loads((ev / "metrics.json").read_text())
    record_file.write_text(json.dumps(record, indent=2))
    keys = ("asr_bd_triggered", "asr_base_triggered", "asr_bd_clean", "patch_mse_bd_triggered", "patch_mse_base_triggered")
    print("| seed | " + " | ".join(keys) + " |")
    for seed, m in record["evals"].items():
        print(f"| {seed} | " + " | ".join(f"{m[k]:.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
