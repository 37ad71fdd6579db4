"""BadT2I backdoor training in the style of diffusers' ``train_text_to_image_lora.py``.

    accelerate launch --num_processes 1 --cpu scripts/train_t2i_backdoor.py \\
        --pretrained_model_name_or_path runs/t2i-base --train_data_dir runs/t2i-pixel-data \\
        --output_dir runs/t2i-pixel-lora --max_train_steps 300 --rank 4 --lamda 0.5

Works with the lab's MNIST base and with any local Stable Diffusion 1.x pipeline directory. Multi-GPU,
``--mixed_precision fp16|bf16`` (or the accelerate config), gradient accumulation and checkpointing go
through the ``Accelerator`` built in :func:`t2i_poison.train.fit`, which also registers the save/load
hooks that write and restore the LoRA weights. Losses, data and hooks are importable from
``t2i_poison``; this file only maps the flags onto :class:`t2i_poison.train.TrainConfig`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from labcore.errors import InputError
from t2i_poison.base_model import load_pipeline
from t2i_poison.train import TrainConfig, fit, load_poison_set


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrained_model_name_or_path", required=True, help="Local diffusers pipeline directory.")
    p.add_argument("--train_data_dir", required=True, help="Poison imagefolder (metadata.jsonl) from `poisonlab t2i make-data`.")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--backdoor", choices=["pixel", "object", "style"], default=None, help="Default: the data's poison.json.")
    p.add_argument("--trigger", default=None, help="Default: the data's poison.json.")
    p.add_argument("--lamda", type=float, default=0.5, help="λ in L = λ·L_bkd + (1−λ)·L_reg (the official flag name).")
    p.add_argument("--weighting", choices=["lambda", "uniform"], default="lambda")
    p.add_argument("--train_mode", choices=["lora", "full"], default="lora")
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--lora_alpha", type=int, default=None)
    p.add_argument("--cross_attention_only", action="store_true")
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--max_train_steps", type=int, default=300)
    p.add_argument("--train_batch_size", type=int, default=16)
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument("--max_grad_norm", type=float, default=1.0)
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None, help="Default: the accelerate config.")
    p.add_argument("--checkpointing_steps", type=int, default=100)
    p.add_argument("--checkpoints_total_limit", type=int, default=2)
    p.add_argument("--resume_from_checkpoint", default=None, help='A checkpoint-N directory or "latest".')
    p.add_argument("--report_to", default=None, help="accelerate tracker, e.g. tensorboard (offline).")
    p.add_argument("--resolution", type=int, default=None, help="Default: the UNet sample size × VAE scale factor.")
    p.add_argument("--num_threads", type=int, default=1, help="torch CPU threads.")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.num_threads)
    try:
        info_file = Path(args.train_data_dir) / "poison.json"
        info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
        kind = args.backdoor or info.get("kind")
        trigger = args.trigger or info.get("trigger")
        if kind is None or trigger is None:
            raise InputError(f"{args.train_data_dir} has no poison.json; pass --backdoor and --trigger")
        cfg = TrainConfig(
            kind=kind, trigger=trigger, lam=args.lamda, weighting=args.weighting, mode=args.train_mode,
            rank=args.rank, lora_alpha=args.lora_alpha, cross_attention_only=args.cross_attention_only,
            learning_rate=args.learning_rate, max_train_steps=args.max_train_steps,
            train_batch_size=args.train_batch_size, gradient_accumulation_steps=args.gradient_accumulation_steps,
            max_grad_norm=args.max_grad_norm, mixed_precision=args.mixed_precision,
            checkpointing_steps=args.checkpointing_steps, checkpoints_total_limit=args.checkpoints_total_limit,
            report_to=args.report_to, seed=args.seed,
        )
        cfg.validate()
        pipe = load_pipeline(Path(args.pretrained_model_name_or_path))
        latent = getattr(pipe, "vae", None) is not None
        resolution = args.resolution or pipe.unet.config.sample_size * (pipe.vae_scale_factor if latent else 1)
        data = load_poison_set(Path(args.train_data_dir), resolution, 3 if latent else pipe.unet.config.in_channels)
        extra = {k: info[k] for k in ("patch", "source_word", "target_word", "style_text") if k in info}
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        sidecar = fit(
            pipe, data, cfg, Path(args.output_dir), resume_from_checkpoint=args.resume_from_checkpoint,
            base_name=args.pretrained_model_name_or_path, extra_sidecar=extra,
            progress=lambda it: tqdm(it, desc=f"badt2i-{cfg.kind}"),
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(sidecar))
    return 0


if __name__ == "__main__":
    sys.exit(main())
