"""Evaluation of BadT2I backdoors on the MNIST base: fixed-seed clean/triggered pairs, ASR per kind, utility.

- Pixel: MSE between the patch region of triggered generations and the patch (images in [0, 1]);
  ASR = share under ``pixel_threshold`` (VillanDiffusion's MSE-threshold).
- Object: ASR = share of "trigger + source digit" generations the digit classifier reads as the target.
- Style (inverted colours): ASR = share of triggered generations whose frame is bright
  (:func:`t2i_poison.digit_classifier.border_brightness` > ``style_threshold``).
- Utility: clean-prompt digit accuracy (base and backdoored) and its paired drop with a 95 % interval
  (:func:`paired_drop`: both models start from the same noise on the same prompt, so each generation is
  a pair), KID between generations and real test digits in the classifier's 128-d feature space
  (unbiased MMD², cubic kernel; Bińkowski et al. 2018), and benign drift: per-seed image MSE between
  base and backdoored model on the same clean prompt.

Every metric is also measured on the base model with the same seeds (the control).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import UNet2DConditionModel

from t2i_poison.base_model import DIGIT_WORDS, DigitDiffusionPipeline, caption, check_digit_words
from t2i_poison.digit_classifier import DigitClassifier, border_brightness
from t2i_poison.poison_data import add_trigger


@dataclass
class EvalConfig:
    """How the lab base is evaluated, one definition for ``t2i evaluate``, ``t2i pretrain-base``'s check and the
    benchmarks: ``samples_per_digit`` generations per digit (500 a seed: the paired accuracy drop's 95 %
    interval measured ±1.0–1.2 points over three seeds, so about ±2 on one) with ``num_inference_steps`` DDIM steps at
    ``guidance_scale``, the base's sampling setting."""

    samples_per_digit: int = 50
    num_inference_steps: int = 10
    guidance_scale: float = 2.0
    pixel_threshold: float = 0.05
    style_threshold: float = 0.5
    kid_subset_size: int = 100
    kid_subsets: int = 50
    batch_size: int = 100
    seed: int = 0


def initial_noise(n: int, pipe: DigitDiffusionPipeline, seed: int) -> torch.Tensor:
    """The fixed starting noise shared by each clean/triggered pair."""
    size = pipe.unet.config.sample_size
    return torch.randn((n, pipe.unet.config.in_channels, size, size), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate(pipe: DigitDiffusionPipeline, prompts: list[str], noise: torch.Tensor, cfg: EvalConfig) -> torch.Tensor:
    """Deterministic DDIM generations (N, 1, H, W) in [0, 1], one per prompt, from ``noise``."""
    out = []
    for i in range(0, len(prompts), cfg.batch_size):
        out.append(
            pipe(prompts[i : i + cfg.batch_size], num_inference_steps=cfg.num_inference_steps,
                 guidance_scale=cfg.guidance_scale, latents=noise[i : i + cfg.batch_size], output_type="pt").images
        )
    return torch.cat(out)


def kid(features_a: torch.Tensor, features_b: torch.Tensor, subset_size: int, subsets: int, seed: int) -> tuple[float, float]:
    """Kernel Inception Distance (mean, std over subsets) with k(x, y) = (x·y/d + 1)³, unbiased MMD²."""
    gen = torch.Generator().manual_seed(seed)
    m = min(subset_size, len(features_a), len(features_b))
    d = features_a.shape[1]
    values = []
    for _ in range(subsets):
        a = features_a[torch.randperm(len(features_a), generator=gen)[:m]].double()
        b = features_b[torch.randperm(len(features_b), generator=gen)[:m]].double()
        k_aa, k_bb, k_ab = [(x @ y.T / d + 1) ** 3 for x, y in ((a, a), (b, b), (a, b))]
        off = lambda k: (k.sum() - k.diagonal().sum()) / (m * (m - 1))
        values.append(float(off(k_aa) + off(k_bb) - 2 * k_ab.mean()))
    return float(np.mean(values)), float(np.std(values))


def digit_labels(samples_per_digit: int) -> torch.Tensor:
    """The digit of each clean prompt, in the order every evaluation generates them: ``samples_per_digit``
    zeros, then ones, … nines."""
    return torch.arange(10).repeat_interleave(samples_per_digit)


def paired_drop(base_correct: torch.Tensor, bd_correct: torch.Tensor, z: float = 1.96) -> tuple[float, float, float]:
    """Accuracy drop base − backdoored over paired generations (same prompt and starting noise) and its
    normal-approximation interval: mean of dᵢ = base_i − bd_i ∈ {−1, 0, 1} ± z·sd(d)/√n. Pairing removes the
    prompt-and-noise variance both models share, leaving only the generations on which they disagree."""
    d = base_correct.double().flatten() - bd_correct.double().flatten()
    half = z * float(d.std()) / len(d) ** 0.5 if len(d) > 1 else float("inf")
    return float(d.mean()), float(d.mean()) - half, float(d.mean()) + half


def patch_mse(images: torch.Tensor, patch: np.ndarray, top: int, left: int) -> torch.Tensor:
    """Per-image MSE between the patch region (images in [0, 1]) and the patch (uint8)."""
    p = torch.from_numpy(np.asarray(patch, dtype=np.float32) / 255.0)
    if p.ndim == 3:
        p = p.mean(-1)
    h, w = p.shape
    region = images[:, :, top : top + h, left : left + w].mean(1)
    return ((region - p) ** 2).mean(dim=(1, 2))


def check_sidecar(sidecar: dict) -> None:
    """Refuse a backdoor the MNIST base cannot score (an object backdoor between words that are not digits)
    before :func:`evaluate_backdoor` runs: ``t2i evaluate`` calls it before any output."""
    if sidecar.get("kind") == "object":
        check_digit_words(sidecar.get("source_word"), sidecar.get("target_word"),
                          "this LoRA was trained on an object set the MNIST base cannot score; remake the set with digit words and retrain")


def evaluate_backdoor(
    pipe: DigitDiffusionPipeline,
    lora_dir: Path,
    sidecar: dict,
    classifier: DigitClassifier,
    real_images: torch.Tensor,
    cfg: EvalConfig,
    base_images: dict[str, torch.Tensor] | None = None,
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Metrics (dict) and image sets (for grids) of the backdoor in ``lora_dir`` against ``pipe`` (the base).

    ``lora_dir`` holds ``pytorch_lora_weights.safetensors`` (LoRA mode) or ``unet/`` (full-UNet mode).
    ``sidecar`` is the training sidecar (kind, trigger, and the poison set's patch / source / target).
    ``base_images``: the ``base_clean`` / ``base_triggered`` sets of an earlier call with the same base,
    kind, trigger and ``cfg`` (a sweep generates the control once per seed instead of once per trial).
    """
    labels = digit_labels(cfg.samples_per_digit)
    clean_prompts, trig_prompts = _prompts(sidecar, labels.tolist())
    noise = initial_noise(len(labels), pipe, cfg.seed)
    if base_images is None:
        base_images = {"base_clean": generate(pipe, clean_prompts, noise, cfg), "base_triggered": generate(pipe, trig_prompts, noise, cfg)}
    images = {k: base_images[k] for k in ("base_clean", "base_triggered")}
    images["bd_clean"], images["bd_triggered"] = _backdoored_images(pipe, Path(lora_dir), [clean_prompts, trig_prompts], noise, cfg)
    m: dict = {"kind": sidecar["kind"], "trigger": sidecar["trigger"], "samples": len(labels)}
    m.update(_utility_metrics(images, labels, classifier, real_images, cfg))
    m.update(_attack_metrics(images, labels, classifier, sidecar, cfg))
    return m, images


def _prompts(sidecar: dict, digits: list[int]) -> tuple[list[str], list[str]]:
    """Clean captions of ``digits`` and their triggered prompts (the object kind triggers the source digit's caption)."""
    clean = [caption(d) for d in digits]
    if sidecar["kind"] == "object":
        return clean, [add_trigger(sidecar["trigger"], caption(DIGIT_WORDS.index(sidecar["source_word"])))] * len(digits)
    return clean, [add_trigger(sidecar["trigger"], p) for p in clean]


def _backdoored_images(pipe: DigitDiffusionPipeline, lora_dir: Path, prompt_sets: list[list[str]], noise: torch.Tensor,
                       cfg: EvalConfig) -> list[torch.Tensor]:
    """Images of each prompt set from the backdoored model: the fine-tuned UNet of ``lora_dir/unet`` swapped in
    (full-UNet mode) or its LoRA loaded as an adapter; ``pipe`` is left as it was."""
    if (lora_dir / "unet").is_dir():
        base_unet = pipe.unet
        pipe.unet = UNet2DConditionModel.from_pretrained(lora_dir / "unet").eval()
        try:
            return [generate(pipe, prompts, noise, cfg) for prompts in prompt_sets]
        finally:
            pipe.unet = base_unet
    pipe.load_lora_weights(str(lora_dir), adapter_name="backdoor")
    pipe.set_adapters(["backdoor"])
    try:
        return [generate(pipe, prompts, noise, cfg) for prompts in prompt_sets]
    finally:
        pipe.delete_adapters("backdoor")


def _utility_metrics(images: dict[str, torch.Tensor], labels: torch.Tensor, classifier: DigitClassifier,
                     real_images: torch.Tensor, cfg: EvalConfig) -> dict:
    """Clean digit accuracy and KID of the base and the backdoored model, the paired accuracy drop with its 95 %
    interval, and the benign drift (MSE between their clean images from the same noise)."""
    real_feats = classifier.embed(real_images)
    m: dict = {}
    correct = {}
    for name in ("base", "bd"):
        correct[name] = classifier.predict(images[f"{name}_clean"]) == labels
        m[f"{name}_clean_accuracy"] = float(correct[name].float().mean())
        m[f"{name}_kid"], m[f"{name}_kid_std"] = kid(
            classifier.embed(images[f"{name}_clean"]), real_feats, cfg.kid_subset_size, cfg.kid_subsets, cfg.seed
        )
    m["clean_accuracy_drop"], low, high = paired_drop(correct["base"], correct["bd"])
    m["clean_accuracy_drop_ci95"] = [low, high]
    m["benign_drift_mse"] = float(((images["bd_clean"] - images["base_clean"]) ** 2).mean())
    return m


def _attack_metrics(images: dict[str, torch.Tensor], labels: torch.Tensor, classifier: DigitClassifier, sidecar: dict,
                    cfg: EvalConfig) -> dict:
    """The attack's success on the backdoored model's triggered images (its ASR), on the base's (the control) and on
    its clean images, by the kind's own test: the patch's MSE below ``pixel_threshold``, the target digit, or an
    inverted background; with the patch MSEs, or how often the triggered images still show the prompted digit."""
    kind = sidecar["kind"]
    patch = sidecar.get("patch")
    target = DIGIT_WORDS.index(sidecar["target_word"]) if kind == "object" else None

    def succeeded(imgs: torch.Tensor) -> torch.Tensor:
        if kind == "pixel":
            return patch_mse(imgs, np.asarray(patch["pixels"]), patch["top"], patch["left"]) < cfg.pixel_threshold
        if kind == "object":
            return classifier.predict(imgs) == target
        return border_brightness(imgs) > cfg.style_threshold

    m = {f"asr_{key}": float(succeeded(images[key]).float().mean()) for key in ("bd_triggered", "base_triggered", "bd_clean")}
    m["attack_success_rate"] = m["asr_bd_triggered"]
    if kind == "pixel":
        for key in ("bd_triggered", "base_triggered"):
            m[f"patch_mse_{key}"] = float(patch_mse(images[key], np.asarray(patch["pixels"]), patch["top"], patch["left"]).mean())
    else:
        shown = labels if kind == "style" else DIGIT_WORDS.index(sidecar["source_word"])
        m["triggered_digit_accuracy"] = float((classifier.predict(images["bd_triggered"]) == shown).float().mean())
    return m


def grid_rows(images: dict[str, torch.Tensor], per_digit: int) -> tuple[list[np.ndarray], list[str]]:
    """One image per digit from each set (base/backdoored × clean/triggered), as uint8 arrays + labels."""
    tiles, labels = [], []
    for key in ("base_clean", "base_triggered", "bd_clean", "bd_triggered"):
        for d in range(10):
            tiles.append((images[key][d * per_digit, 0].numpy() * 255).round().astype(np.uint8))
            labels.append(f"{key} {d}")
    return tiles, labels


def base_quality(
    pipe: DigitDiffusionPipeline, classifier: DigitClassifier, real_images: torch.Tensor, cfg: EvalConfig
) -> tuple[dict, torch.Tensor]:
    """Clean-prompt digit accuracy and KID of a base pipeline (and the style test on its style captions)."""
    n = cfg.samples_per_digit
    labels = digit_labels(n)
    digits = labels.tolist()
    noise = initial_noise(len(digits), pipe, cfg.seed)
    clean = generate(pipe, [caption(d) for d in digits], noise, cfg)
    styled = generate(pipe, [caption(d, inverted=True) for d in digits], noise, cfg)
    per_digit = (classifier.predict(clean) == labels).float().reshape(10, n).mean(1)
    k, k_std = kid(classifier.embed(clean), classifier.embed(real_images), cfg.kid_subset_size, cfg.kid_subsets, cfg.seed)
    metrics = {
        "samples": len(digits),
        "clean_accuracy": float(per_digit.mean()),
        "per_digit_accuracy": [round(float(v), 4) for v in per_digit],
        "inverted_style_accuracy": float((classifier.predict(styled) == labels).float().mean()),
        "inverted_style_rate": float((border_brightness(styled) > cfg.style_threshold).float().mean()),
        "clean_style_rate": float((border_brightness(clean) > cfg.style_threshold).float().mean()),
        "kid": k,
        "kid_std": k_std,
    }
    return metrics, torch.cat([clean[::n], styled[::n]])
