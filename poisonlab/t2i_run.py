"""The poisonlab side of ``poisonlab t2i``: MNIST inputs for make-data, and evaluation runs with their report.

The research code is ``t2i_poison`` (poison sets, training, the MNIST and Stable Diffusion evaluators);
this module feeds it the lab's MNIST data and writes run directories (config.yaml, metrics.json,
report.html with the clean/triggered image grid) for every pipeline family.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from labcore.config import changed_fields
from labcore.errors import InputError
from poisonlab import data
from t2i_poison.base_model import PretrainConfig
from t2i_poison.evaluate import EvalConfig
from t2i_poison.evaluate_sd import SDEvalConfig
from poisonlab.report import Report
from poisonlab.runs import write_json

CLASSIFIER_DIR = "classifier"
SHARED_EVAL = ("num_inference_steps", "guidance_scale", "seed")
"""``t2i evaluate``'s settings that ``--inference-steps``, ``--guidance`` and ``--seed`` write into both ``digits`` and ``sd``."""


@dataclass
class PretrainRun:
    """``t2i pretrain-base``: the base's ``pretrain`` recipe (its ``seed`` also seeds the digit classifier and the
    accuracy ``check``, which samples as ``t2i evaluate`` and the benchmarks do: :class:`EvalConfig`), torch ``threads``."""

    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    check: EvalConfig = field(default_factory=EvalConfig)
    threads: int = 1

    def validate(self) -> None:
        if self.check.samples_per_digit < 1 or self.threads < 1 or self.pretrain.steps < 1 or self.pretrain.batch_size < 1:
            raise InputError("check.samples_per_digit, threads, pretrain.steps and pretrain.batch_size must be >= 1")
        if not 0 < self.pretrain.lr < float("inf"):
            raise InputError(f"pretrain.lr must be a finite number > 0, got {self.pretrain.lr}")


@dataclass
class EvaluateRun:
    """``t2i evaluate``: the ``base`` pipeline, the backdoor ``lora`` (a ``t2i train`` folder), the judges
    (``classifier`` for the MNIST base, default ``<base>/classifier``; ``clip`` for SD pipelines) and the
    sampling settings of the MNIST base (``digits``) or of a Stable Diffusion pipeline (``sd``)."""

    base: str | None = None
    lora: str | None = None
    classifier: str | None = None
    clip: str | None = None
    digits: EvalConfig = field(default_factory=EvalConfig)
    sd: SDEvalConfig = field(default_factory=SDEvalConfig)
    threads: int = 1

    def validate(self) -> None:
        if self.base is None or self.lora is None:
            raise InputError("pass --base and --lora (or set base: and lora: in the --config file)")
        if self.threads < 1:
            raise InputError(f"threads must be >= 1, got {self.threads}")
        for section in (self.digits, self.sd):
            if not math.isfinite(section.guidance_scale) or section.guidance_scale < 0:
                raise InputError(f"--guidance must be a finite number ≥ 0 (1 or less: no classifier-free guidance), got {section.guidance_scale}")

    def check_steps(self, train_steps: int, digits: bool) -> None:
        """The sampling steps of the family in use fit the pipeline's scheduler (1 to its ``train_steps``)."""
        steps = (self.digits if digits else self.sd).num_inference_steps
        if not 1 <= steps <= train_steps:
            raise InputError(f"--inference-steps {steps}: this pipeline's scheduler samples in 1 to {train_steps} steps; pass a value in that range")

    def refuse_unread(self, digits: bool) -> None:
        """Refuse the other family's settings (``sd``/``clip`` on the MNIST base, ``digits``/``classifier`` on a
        Stable Diffusion pipeline) where they differ from their defaults: they would be ignored. The settings of
        :data:`SHARED_EVAL` are not checked: the options set them in both sections, and a saved config holds both."""
        unread = [f"{'sd' if digits else 'digits'}.{name}" for name in changed_fields(self.sd if digits else self.digits)
                  if name not in SHARED_EVAL]
        judge = "clip" if digits else "classifier"
        unread += [judge] if getattr(self, judge) is not None else []
        if unread:
            base = "the MNIST base (it reads digits.* and classifier)" if digits else "a Stable Diffusion pipeline (it reads sd.* and clip)"
            raise InputError(f"{', '.join(unread)}: not read on {base}; drop them")


def mnist_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return data.image_tensors(data.load("mnist")[split])


def mnist_inputs(num_images: int, resolution: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """``num_images`` MNIST train digits resized to ``resolution`` (uint8) and their base-model captions."""
    from t2i_poison.base_model import caption, resize_digits

    x, y = mnist_tensors("train")
    if num_images > len(y):
        raise InputError(f"--num-images {num_images} exceeds the {len(y)} MNIST training digits available; ask for at most {len(y)}")
    idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:num_images])
    arrays = list((resize_digits(x[idx], resolution)[:, 0].numpy() * 255).round().astype(np.uint8))
    return arrays, [caption(int(v)) for v in y[idx]]


def read_sidecar(lora: Path) -> dict:
    from t2i_poison.train import LORA_WEIGHTS, SIDECAR

    weights = (Path(lora) / LORA_WEIGHTS).is_file() or (Path(lora) / "unet").is_dir()
    if not weights or not (Path(lora) / SIDECAR).is_file():
        raise InputError(f"{lora} holds no backdoor ({LORA_WEIGHTS} or unet/, and {SIDECAR}); pass the output of `poisonlab t2i train`")
    if (Path(lora) / LORA_WEIGHTS).is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(Path(lora) / LORA_WEIGHTS), framework="pt") as f:
                f.keys()
        except Exception as exc:  # safetensors raises its own error type for truncated or foreign files
            raise InputError(f"{Path(lora) / LORA_WEIGHTS} is not a readable safetensors file ({exc}); retrain with "
                             "`poisonlab t2i train`") from None
    try:
        return json.loads((Path(lora) / SIDECAR).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{Path(lora) / SIDECAR} is not valid JSON ({exc}); retrain with `poisonlab t2i train`") from None


def _table(report: Report, metrics: dict) -> None:
    report.heading(f"BadT2I {metrics['kind']} backdoor (trigger {metrics['trigger']!r})")
    report.table([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}], "metrics (base = control)")


def add_to_report(report: Report, metrics: dict, images: dict, per_digit: int) -> None:
    """MNIST base: metrics table and one generation per digit from each of the four sets."""
    from t2i_poison.evaluate import grid_rows

    _table(report, metrics)
    tiles, labels = grid_rows(images, per_digit)
    report.image_grid(tiles, labels, ncols=10, caption="rows: base clean, base triggered, backdoored clean, backdoored triggered")


def evaluate_mnist(pipe, lora: Path, sidecar: dict, classifier: Path, cfg, stage: Path) -> dict:
    """The lab base: digit-classifier ASR, clean accuracy, KID; writes metrics.json and report.html."""
    from t2i_poison.digit_classifier import load_classifier
    from t2i_poison.evaluate import evaluate_backdoor

    xt, _ = mnist_tensors("test")
    metrics, images = evaluate_backdoor(pipe, lora, sidecar, load_classifier(classifier), xt, cfg)
    write_json(stage / "metrics.json", metrics)
    report = Report(f"BadT2I {sidecar['kind']} backdoor")
    add_to_report(report, metrics, images, cfg.samples_per_digit)
    report.save(stage / "report.html")
    return metrics


def evaluate_sd(pipe, lora: Path, sidecar: dict, clip: str | None, cfg, stage: Path) -> dict:
    """Stable Diffusion pipelines: patch-MSE or zero-shot-CLIP ASR with the base as control, CLIP FID/KID."""
    from t2i_poison.clip_judge import ClipJudge
    from t2i_poison.evaluate_sd import evaluate_sd_backdoor, sd_grid

    judge = ClipJudge.load(clip) if clip else None
    metrics, images = evaluate_sd_backdoor(pipe, lora, sidecar, cfg, judge)
    write_json(stage / "metrics.json", metrics)
    report = Report(f"BadT2I {sidecar['kind']} backdoor on {metrics['pipeline']}")
    _table(report, metrics)
    tiles, labels = sd_grid(images, cfg.samples_per_prompt)
    report.image_grid(tiles, labels, ncols=len(tiles) // 4,
                      caption="rows: base clean, base triggered, backdoored clean, backdoored triggered (same starting latents per column)")
    report.save(stage / "report.html")
    return metrics
