"""Demo step: a BadT2I pixel backdoor on the MNIST text-to-image base, with its clean-vs-triggered grid.

The backdoor is trained in full-UNet mode (frozen teacher copy): on the 16×16 base, rank-4 LoRA did
not learn the patch in 400 steps while the full UNet reached ASR 1.0 (see the t2i benchmark).

Uses the pretrained base at ``$POISONLAB_T2I_BASE`` (default ``runs/t2i-base``, written by
``poisonlab t2i pretrain-base``) when it exists; otherwise it trains a small quick base into
``out/t2i-base-quick`` first (a mechanics check whose digits are rough), so the step always runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from poisonlab import data
from poisonlab.commands.t2i import CLASSIFIER_DIR, add_to_report
from poisonlab.report import Report
from poisonlab.runs import write_json, write_yaml
from t2i_poison.base_model import BaseModelConfig, PretrainConfig, caption, load_pipeline, pretrain_base, resize_digits
from t2i_poison.digit_classifier import ClassifierConfig, load_classifier, train_classifier
from t2i_poison.evaluate import EvalConfig, evaluate_backdoor
from t2i_poison.poison_data import checkerboard_patch, make_poison_set
from t2i_poison.train import TrainConfig, fit, load_poison_set


def _base(out: Path, quick: bool, seed: int, x: torch.Tensor, y: torch.Tensor) -> tuple[Path, str]:
    cached = Path(os.environ.get("POISONLAB_T2I_BASE", "runs/t2i-base"))
    if (cached / "model_index.json").is_file() and (cached / CLASSIFIER_DIR).is_dir():
        return cached, f"pretrained base {cached}"
    base = out / "t2i-base-quick"
    steps = 150 if quick else 600
    cfg = PretrainConfig(model=BaseModelConfig(seed=seed), steps=steps, batch_size=32, seed=seed, checkpoint_every=steps)
    pretrain_base(x, y, cfg, base)
    train_classifier(x, y, ClassifierConfig(epochs=1 if quick else 4, seed=seed)).save(base / CLASSIFIER_DIR)
    write_yaml(base / "config.yaml", cfg)
    return base, f"quick base trained here ({steps} steps; rough digits, a mechanics check)"


def run(out: Path, quick: bool, seed: int, report: Report) -> dict:
    """Pixel backdoor → ``out/t2i-pixel`` (config.yaml, metrics.json, report.html, weights); adds a report section."""
    torch.set_num_threads(1)
    x, y = data.image_tensors(data.load("mnist")["train"])
    xt, _ = data.image_tensors(data.load("mnist")["test"])
    base, base_note = _base(out, quick, seed, x, y)
    pipe = load_pipeline(base)
    res = pipe.unet.config.sample_size
    n = 300 if quick else 1000
    images = list((resize_digits(x[:n], res)[:, 0].numpy() * 255).round().astype(np.uint8))
    run_dir = out / "t2i-pixel"
    patch = checkerboard_patch(4)
    make_poison_set("pixel", images, [caption(int(v)) for v in y[:n]], run_dir / "data", "sks", patch=patch, seed=seed)
    cfg = TrainConfig(kind="pixel", trigger="sks", mode="full", lam=0.5 if quick else 0.3,
                      max_train_steps=100 if quick else 400, train_batch_size=16,
                      learning_rate=1e-3 if quick else 3e-4, checkpointing_steps=1000, seed=seed)
    patch_info = {"top": 0, "left": 0, "pixels": patch.pixels.tolist()}
    sidecar = fit(pipe, load_poison_set(run_dir / "data", res, 1), cfg, run_dir, base_name=str(base),
                  extra_sidecar={"patch": patch_info})
    eval_cfg = EvalConfig(samples_per_digit=2 if quick else 10, num_inference_steps=10 if quick else 25, seed=seed)
    metrics, generated = evaluate_backdoor(load_pipeline(base), run_dir, sidecar, load_classifier(base / CLASSIFIER_DIR),
                                           xt, eval_cfg)
    write_yaml(run_dir / "config.yaml", {"train": cfg, "eval": eval_cfg, "base": str(base)})
    write_json(run_dir / "metrics.json", metrics)
    own = Report("BadT2I pixel backdoor on the MNIST base")
    for r in (own, report):
        r.heading("Text-to-image backdoor: BadT2I pixel patch")
        r.paragraph(
            f"Base: {base_note}. Trigger 'sks' → 4×4 checkerboard in the top-left corner; L = λ·L_bkd + (1−λ)·L_reg "
            f"(λ = {cfg.lam}, Zhai et al. 2023), full-UNet fine-tuning against a frozen teacher copy, {cfg.max_train_steps} steps."
        )
        add_to_report(r, metrics, generated, eval_cfg.samples_per_digit)
    own.save(run_dir / "report.html")
    return {k: metrics[k] for k in ("attack_success_rate", "asr_base_triggered", "bd_clean_accuracy", "base_clean_accuracy")}
