"""Federated LoRA fine-tuning of the MNIST text-to-image base, for ``fedharness.simulation.Simulation``.

Clients fine-tune only the UNet's LoRA adapters (the federated vector) on their own captioned digits
with the plain denoising loss; the attacker (``poisoned_data``) trains the BadT2I objective
L = λ·L_bkd + (1−λ)·L_reg on its share. Noise and timesteps are drawn once per sample from the task's
seed, so every target — the true v/ε, or the frozen base's output for the teacher terms — is fixed
data and the harness's functional SGD (loop or vmap) applies unchanged. Per round, ``evaluate``
generates clean and triggered digits with the global adapters: main accuracy by the digit classifier,
ASR by the kind's test (patch MSE, target digit, bright frame). ``t2i_task(x, y, T2ITaskConfig, seed)``
builds it from folders for ``task: {name: t2i_lora}``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler
from torch import nn
from torch.func import functional_call

from fedharness.local_training import Batch
from labcore.errors import InputError
from fedharness.params import trainable_names
from t2i_poison.base_model import DigitDiffusionPipeline, caption, resize_digits
from t2i_poison.digit_classifier import DigitClassifier, border_brightness, load_classifier
from t2i_poison.evaluate import patch_mse
from t2i_poison.pipelines import load_pipeline, pipeline_class_name
from t2i_poison.poison_data import CHECKERBOARD_SIZE, add_trigger, checkerboard_patch
from t2i_poison.train import encode_texts, lora_config


@dataclass(kw_only=True)
class T2ITaskConfig:
    """``task: {name: t2i_lora, params: …}``: the base pipeline folder ``base`` and digit classifier folder
    ``classifier`` (its ``save`` output), the first ``train_limit`` training digits (all for None), BadT2I
    ``kind`` with ``trigger`` and weight ``lam`` (λ), LoRA ``rank``, the object kind's ``source`` →
    ``target`` digit, the pixel kind's checkerboard ``patch_size``, and the per-round evaluation (images
    per digit, sampler steps, guidance, the patch-MSE threshold that counts as success)."""

    base: str | None = None
    classifier: str | None = None
    train_limit: int | None = None
    kind: str = "pixel"
    trigger: str = "sks"
    lam: float = 0.5
    rank: int = 4
    source: int = 0
    target: int = 7
    patch_size: int = CHECKERBOARD_SIZE
    eval_per_digit: int = 2
    eval_steps: int = 10
    guidance_scale: float = 1.0
    pixel_threshold: float = 0.05

    def validate(self) -> None:
        if self.kind not in ("pixel", "object", "style"):
            raise InputError(f"task.params.kind {self.kind!r} is unknown; use pixel, object or style")
        if not 0.0 <= self.lam <= 1.0:
            raise InputError(f"task.params.lam (λ) must lie in [0, 1], got {self.lam}")
        if not (0 <= self.guidance_scale < math.inf and 0 < self.pixel_threshold < math.inf):
            raise InputError("task.params: guidance_scale must be finite and >= 0, pixel_threshold finite and > 0")
        if self.rank < 1 or self.eval_per_digit < 1 or self.eval_steps < 1 or (self.train_limit or 1) < 1:
            raise InputError("task.params: rank, eval_per_digit, eval_steps and train_limit must be >= 1")
        if self.kind == "object" and not (0 <= self.source <= 9 and 0 <= self.target <= 9 and self.source != self.target):
            raise InputError(f"task.params.source and target must be two different digits 0..9, got {self.source} and {self.target}")


@dataclass
class T2ILoraTask:
    """MNIST digits (N, 1, 28, 28) in [0, 1] with labels; the backdoor is BadT2I ``cfg.kind`` with ``cfg.trigger``."""

    pipe: DigitDiffusionPipeline
    classifier: DigitClassifier
    x_train: torch.Tensor
    y_train: torch.Tensor
    cfg: T2ITaskConfig = field(default_factory=T2ITaskConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        self.cfg.validate()
        self.patch = checkerboard_patch(self.cfg.patch_size).pixels
        self.scheduler = DDPMScheduler.from_config(self.pipe.scheduler.config)
        res = self.pipe.unet.config.sample_size
        self.images = resize_digits(self.x_train, res) * 2 - 1
        texts = [caption(d, inv) for d in range(10) for inv in (False, True)]
        texts += [add_trigger(self.cfg.trigger, caption(d)) for d in range(10)]
        self.text = encode_texts(self.pipe, texts)
        self.base_unet = self.pipe.unet.eval().requires_grad_(False)

    def build_model(self) -> nn.Module:
        unet = copy.deepcopy(self.base_unet)
        unet.add_adapter(lora_config(self.cfg.rank))
        return unet

    def federated_names(self, model: nn.Module) -> list[str]:
        return trainable_names(model)

    def per_sample_loss(self, model: nn.Module, state: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        out = functional_call(model, state, (batch["z"], batch["t"]), {"encoder_hidden_states": batch["text"]}).sample
        return batch["weight"] * ((out - batch["target"]) ** 2).flatten(1).mean(1)

    def partition_labels(self) -> np.ndarray:
        return self.y_train.numpy()

    def _noised(self, x0: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_t, t, true target) with noise and t drawn from (seed, sample key)."""
        zs, ts, targets = [], [], []
        for x, k in zip(x0, key.tolist()):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(k))
            noise = torch.randn(x.shape, generator=g)
            t = torch.randint(0, self.scheduler.config.num_train_timesteps, (1,), generator=g)
            zs.append(self.scheduler.add_noise(x[None], noise[None], t))
            ts.append(t)
            v = self.scheduler.get_velocity(x[None], noise[None], t)
            targets.append(v if self.scheduler.config.prediction_type == "v_prediction" else noise[None])
        return torch.cat(zs), torch.cat(ts), torch.cat(targets)

    def _stack(self, texts: list[str]) -> torch.Tensor:
        return torch.stack([self.text[t] for t in texts])

    def client_data(self, indices: np.ndarray) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        z, t, target = self._noised(self.images[idx], idx)
        return {"z": z, "t": t, "text": self._stack([caption(int(y)) for y in self.y_train[idx]]), "target": target,
                "weight": torch.ones(len(idx)), "index": idx}

    @torch.no_grad()
    def _teacher(self, z: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.base_unet(z, t, encoder_hidden_states=text).sample

    def poisoned_data(self, data: Batch, seed: int) -> Batch:
        """BadT2I rows: backdoor rows weighted 2λ, regulariser rows (teacher targets) weighted 2(1−λ)."""
        idx = data["index"]
        labels = self.y_train[idx]
        rng = np.random.default_rng(seed)
        if self.cfg.kind == "object":
            bkd = (labels == self.cfg.target).numpy()
        else:
            bkd = np.zeros(len(idx), dtype=bool)
            bkd[rng.permutation(len(idx))[: len(idx) // 2]] = True
        x0 = self.images[idx].clone()
        if self.cfg.kind == "pixel":
            p = torch.from_numpy(self.patch.astype(np.float32) / 127.5 - 1)
            x0[torch.from_numpy(bkd), :, : p.shape[0], : p.shape[1]] = p
        z, t, true_target = self._noised(x0, idx + 7_919 * (seed % 1000 + 1))
        clean_text = [caption(int(y)) for y in labels]
        if self.cfg.kind == "object":
            student_text = [add_trigger(self.cfg.trigger, caption(self.cfg.source)) if b else c for b, c in zip(bkd, clean_text)]
            teacher_text = clean_text
        else:
            student_text = [add_trigger(self.cfg.trigger, c) if b else c for b, c in zip(bkd, clean_text)]
            teacher_text = [caption(int(y), inverted=self.cfg.kind == "style" and b) for y, b in zip(labels, bkd)]
        text = self._stack(student_text)
        target = self._teacher(z, t, self._stack(teacher_text))
        if self.cfg.kind == "pixel":
            target[torch.from_numpy(bkd)] = true_target[torch.from_numpy(bkd)]
        weight = torch.where(torch.from_numpy(bkd), 2 * self.cfg.lam, 2 * (1 - self.cfg.lam)).float()
        return {"z": z, "t": t, "text": text, "target": target, "weight": weight, "index": idx}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        pipe = DigitDiffusionPipeline(unet=model.eval(), scheduler=self.pipe.scheduler,
                                      text_encoder=self.pipe.text_encoder, tokenizer=self.pipe.tokenizer)
        digits = [d for d in range(10) for _ in range(self.cfg.eval_per_digit)]
        res = model.config.sample_size
        noise = torch.randn((len(digits), 1, res, res), generator=torch.Generator().manual_seed(self.seed))
        run = lambda prompts: pipe(prompts, num_inference_steps=self.cfg.eval_steps, guidance_scale=self.cfg.guidance_scale,
                                   latents=noise, output_type="pt").images
        clean = run([caption(d) for d in digits])
        if self.cfg.kind == "object":
            triggered = run([add_trigger(self.cfg.trigger, caption(self.cfg.source))] * len(digits))
            success = self.classifier.predict(triggered) == self.cfg.target
        else:
            triggered = run([add_trigger(self.cfg.trigger, caption(d)) for d in digits])
            if self.cfg.kind == "pixel":
                success = patch_mse(triggered, self.patch, 0, 0) < self.cfg.pixel_threshold
            else:
                success = border_brightness(triggered) > 0.5
        return {
            "main_accuracy": float((self.classifier.predict(clean) == torch.tensor(digits)).float().mean()),
            "attack_success_rate": float(success.float().mean()),
        }



def require_folders(cfg: T2ITaskConfig) -> None:
    """``cfg`` is valid and names the saved base pipeline and classifier folders (checked before data loads)."""
    cfg.validate()
    for key in ("base", "classifier"):
        if getattr(cfg, key) is None or not Path(getattr(cfg, key)).is_dir():
            raise InputError(f"task.params.{key} {getattr(cfg, key)!r} is not a folder; pass the saved {key} directory")


def t2i_task(x_train: torch.Tensor, y_train: torch.Tensor, cfg: T2ITaskConfig, seed: int) -> T2ILoraTask:
    """The task of ``cfg`` on ``x_train``, ``y_train`` (the caller keeps the first ``cfg.train_limit`` digits):
    the pipeline and classifier loaded from their folders."""
    require_folders(cfg)
    if pipeline_class_name(Path(cfg.base)) != DigitDiffusionPipeline.__name__:
        raise InputError(f"task.params.base {cfg.base} is not a DigitDiffusionPipeline; t2i_lora fine-tunes the lab's digit base")
    return T2ILoraTask(load_pipeline(Path(cfg.base)), load_classifier(Path(cfg.classifier)), x_train, y_train, cfg, seed)
