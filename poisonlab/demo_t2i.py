"""Demo step: a BadT2I pixel backdoor trained with LoRA on the MNIST text-to-image base, with its grid.

The base: ``$POISONLAB_T2I_BASE`` when set (a pipeline from ``poisonlab t2i pretrain-base`` with its
``classifier/``); otherwise the demo recipe below, pretrained once into the user's cache directory
(``$XDG_CACHE_HOME/poisonlab/t2i-base/<recipe hash>``, default ``~/.cache/...``), keyed by recipe and
seed, so later runs reuse it (the first run says it is training it). ``tiny`` trains a mechanics-check
base inside the run directory instead. Paths written into the artefacts are absolute (the cache) or
relative to the artefact, so they stay valid after the demo's final rename.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from poisonlab import data
from poisonlab.demo import cache_key, user_cache
from poisonlab.t2i_run import CLASSIFIER_DIR, add_to_report
from poisonlab.report import Report
from poisonlab.runs import write_json, write_yaml
from t2i_poison.base_model import BaseModelConfig, PretrainConfig, caption, pretrain_base, resize_digits
from t2i_poison.digit_classifier import ClassifierConfig, load_classifier, train_classifier
from t2i_poison.evaluate import EvalConfig, evaluate_backdoor
from t2i_poison.pipelines import load_pipeline
from t2i_poison.poison_data import checkerboard_patch, make_poison_set
from t2i_poison.train import TrainConfig, fit, load_poison_set

RECIPE_VERSION = 2


def base_recipe(size: str, seed: int) -> tuple[PretrainConfig, ClassifierConfig]:
    """The demo base's pretraining (PretrainConfig's defaults, measured by scripts/bench_t2i_base.py) and its evaluator."""
    if size == "tiny":
        model = BaseModelConfig(block_out_channels=(8, 16), text_hidden_size=16, text_layers=1, seed=seed)
        return PretrainConfig(model=model, steps=5, batch_size=8, seed=seed, checkpoint_every=5), ClassifierConfig(epochs=1, seed=seed)
    return PretrainConfig(model=BaseModelConfig(seed=seed), seed=seed), ClassifierConfig(epochs=3, seed=seed)


def recipe_key(pretrain: PretrainConfig, classifier: ClassifierConfig) -> str:
    return cache_key({"v": RECIPE_VERSION, "pretrain": asdict(pretrain), "classifier": asdict(classifier)})


def train_base(where: Path, pretrain: PretrainConfig, clf: ClassifierConfig, x: torch.Tensor, y: torch.Tensor) -> None:
    """Pretrain into ``where``.partial (resumable) and rename it to ``where`` once complete."""
    partial = where.with_name(where.name + ".partial")
    if not (partial / "model_index.json").is_file():
        pretrain_base(x, y, pretrain, partial, progress=lambda it: tqdm(it, desc="  pretrain base", total=pretrain.steps,
                                                                          mininterval=5, leave=False))
    train_classifier(x, y, clf, progress=lambda it: tqdm(it, desc="  digit classifier (epochs)", leave=False)).save(
        partial / CLASSIFIER_DIR)
    write_yaml(partial / "config.yaml", {"pretrain": pretrain, "classifier": clf})
    partial.rename(where)


def demo_base(out: Path, size: str, seed: int, x: torch.Tensor, y: torch.Tensor) -> tuple[Path, str]:
    """The base pipeline directory for the demo and a sentence saying where it came from."""
    given = os.environ.get("POISONLAB_T2I_BASE")
    if given:
        return Path(given).resolve(), f"pretrained base {given}"
    pretrain, clf = base_recipe(size, seed)
    if size == "tiny":
        train_base(out / "t2i-base-tiny", pretrain, clf, x, y)
        return out / "t2i-base-tiny", f"tiny base trained here ({pretrain.steps} steps; a mechanics check, not digits)"
    where = user_cache("t2i-base") / recipe_key(pretrain, clf)
    note = f"the demo base ({pretrain.steps} steps × {pretrain.batch_size}), cached in {where}"
    if (where / "model_index.json").is_file():
        return where, note + ", reused"
    print(f"  t2i: pretraining the demo's MNIST text-to-image base once (a few minutes); later runs reuse {where}",
          file=sys.__stderr__, flush=True)
    where.parent.mkdir(parents=True, exist_ok=True)
    train_base(where, pretrain, clf, x, y)
    return where, note + ", trained by this run"


def backdoor_recipe(size: str, seed: int) -> TrainConfig:
    """LoRA pixel backdoor: ``TrainConfig``'s measured recipe (rank 16 on attention + resnet convolutions, λ = 0.1,
    which keeps clean digit accuracy within 2 points of the base where λ = 0.5 cost 7–11 points at the same ASR),
    at the demo's lr 3e-3 for 250 steps."""
    steps = 4 if size == "tiny" else 250
    return TrainConfig(kind="pixel", trigger="sks", mode="lora", learning_rate=3e-3, max_train_steps=steps,
                       checkpointing_steps=10**6, seed=seed)


def run(out: Path, size: str, seed: int, report: Report, cores: int | None = None) -> dict:
    """Pixel backdoor → ``out/t2i-pixel`` (config.yaml, metrics.json, report.html, LoRA); adds a report section.

    ``size``: the demo size ("tiny", "quick", "full"); one thread whatever ``cores`` (the demo's step signature)."""
    torch.set_num_threads(1)
    x, y = data.image_tensors(data.load("mnist")["train"])
    xt, _ = data.image_tensors(data.load("mnist")["test"])
    base, base_note = demo_base(out, size, seed, x, y)
    pipe = load_pipeline(base)
    res = pipe.unet.config.sample_size
    n = {"tiny": 40, "quick": 300, "full": 1000}[size]
    images = list((resize_digits(x[:n], res)[:, 0].numpy() * 255).round().astype(np.uint8))
    run_dir = out / "t2i-pixel"
    base_ref = str(base) if base.is_absolute() else os.path.relpath(base, run_dir)
    patch = checkerboard_patch(4)
    make_poison_set("pixel", images, [caption(int(v)) for v in y[:n]], run_dir / "data", "sks", patch=patch, seed=seed)
    cfg = backdoor_recipe(size, seed)
    patch_info = {"top": 0, "left": 0, "pixels": patch.pixels.tolist()}
    sidecar = fit(pipe, load_poison_set(run_dir / "data", res, 1), cfg, run_dir, base_name=base_ref,
                  extra_sidecar={"patch": patch_info})
    eval_cfg = EvalConfig(samples_per_digit={"tiny": 1, "quick": 10, "full": 20}[size],
                          num_inference_steps=2 if size == "tiny" else 10, seed=seed)
    metrics, generated = evaluate_backdoor(load_pipeline(base), run_dir, sidecar, load_classifier(base / CLASSIFIER_DIR),
                                           xt, eval_cfg)
    write_yaml(run_dir / "config.yaml", {"train": cfg, "eval": eval_cfg, "base": base_ref})
    write_json(run_dir / "metrics.json", metrics)
    own = Report("BadT2I pixel backdoor on the MNIST base")
    for r in (own, report):
        r.heading("Text-to-image backdoor: BadT2I pixel patch")
        r.paragraph(
            f"Base: {base_note}. Trigger 'sks' → 4×4 checkerboard in the top-left corner; L = λ·L_bkd + (1−λ)·L_reg "
            f"(λ = {cfg.lam}, Zhai et al. 2023), LoRA rank {cfg.rank} (teacher = adapters off), {cfg.max_train_steps} steps."
        )
        add_to_report(r, metrics, generated, eval_cfg.samples_per_digit)
    own.save(run_dir / "report.html")
    return {k: metrics[k] for k in ("attack_success_rate", "asr_base_triggered", "bd_clean_accuracy", "base_clean_accuracy")}
