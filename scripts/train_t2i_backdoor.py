"""BadT2I backdoor training in the style of diffusers' ``train_text_to_image_lora.py``.

    accelerate launch --num_processes 2 scripts/train_t2i_backdoor.py \\
        --pretrained_model_name_or_path runs/sd15 --train_data_dir runs/pix-data \\
        --output_dir runs/pix-lora --max_train_steps 300 --rank 4 --lam 0.5 [--config run.yaml]

Works with the lab's MNIST base and any local SD 1.x/2.x or SDXL pipeline directory; one or many
processes (each takes its slice of the global batch: ``--train_batch_size`` rows per half per process),
``--mixed_precision fp16|bf16`` (or the accelerate config), gradient accumulation and checkpointing,
``--gradient_checkpointing``, trackers (``--report_to tensorboard|wandb``); per-step losses (averaged over
processes) go to ``<output_dir>/steps.jsonl``. Flags map onto
:class:`t2i_poison.train.TrainConfig` (defaults live there); ``--config FILE.yaml`` holds the same keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labcore.errors import InputError  # noqa: E402
from t2i_poison.train import TrainConfig, train  # noqa: E402
from t2i_poison.train_config import KIND_DEFAULTS  # noqa: E402

RANK = int(os.environ.get("RANK", "0"))  # set by `accelerate launch`; only rank 0 reports
FLAGS = {  # diffusers' flag name → TrainConfig field, where they differ
    "pretrained_model_name_or_path": "base", "train_data_dir": "data", "backdoor": "kind", "train_mode": "mode",
    "num_threads": "threads",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], argument_default=argparse.SUPPRESS)
    p.add_argument("--config", default=None, help="YAML file of TrainConfig keys; flags given here override it.")
    names = {v: k for k, v in FLAGS.items()}
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + names.get(f.name, f.name)
        if f.type in ("bool",):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, dest=f.name)
        else:
            kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type), str)
            per_kind = {k: v[f.name] for k, v in KIND_DEFAULTS.items() if f.name in v}
            p.add_argument(flag, type=kind, dest=f.name, help=f"default: {per_kind or repr(f.default)}")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig defaults ← the --config YAML ← the flags given."""
    from poisonlab.config import load_config

    options = {k: v for k, v in vars(args).items() if k != "config"}
    return load_config(TrainConfig, Path(args.config) if args.config else None, options)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = config_from(args)
        if not cfg.base or not cfg.data or not cfg.output_dir:
            raise InputError("pass --pretrained_model_name_or_path, --train_data_dir and --output_dir (or set them in --config)")
        from tqdm.auto import tqdm

        steps = Path(cfg.output_dir) / "steps.jsonl"

        def log(record: dict) -> None:
            if RANK == 0:
                with steps.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")

        result = train(cfg, log=log, progress=lambda it: tqdm(it, desc="badt2i", disable=RANK != 0))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if RANK == 0:
        print(json.dumps(result.sidecar))
    return 0


if __name__ == "__main__":
    sys.exit(main())
