"""Evaluation of BadT2I backdoors on Stable Diffusion pipelines (SD 1.x/2.x, SDXL), the base as control.

Each evaluation prompt p (from the backdoor's sidecar: clean captions, or for the object backdoor the
source-object captions) is generated with and without the trigger, by the base and by the backdoored
model, from the same starting latents per sample (so differences are the model's, not the noise's).

- Pixel (BadT2I §4; VillanDiffusion's threshold test): the patch region's MSE against the patch in
  [0, 1]; ASR = share of triggered generations under ``pixel_threshold``.
- Object / style (as BackdoorDM): a zero-shot CLIP classifier (``clip_judge``) between the target and
  the prompted object ("a photo of a cat" vs "... dog"), or the style prompt vs "a photo"; ASR = share
  of triggered generations judged target / styled.
- Clean fidelity: FID and KID (torchmetrics) between the backdoored and the base model's clean-prompt
  generations in CLIP image-feature space, and the per-pixel benign drift between the two.

Every ASR is also reported for the base (``asr_base_triggered``: the control) and for the backdoored
model on clean prompts (``asr_bd_clean``: leakage).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from labcore.errors import InputError
from t2i_poison.clip_judge import ClipJudge
from t2i_poison.poison_data import add_trigger


@dataclass
class SDEvalConfig:
    prompts: int = 8
    samples_per_prompt: int = 2
    num_inference_steps: int = 25
    guidance_scale: float = 7.5
    pixel_threshold: float = 0.05
    kid_subset_size: int = 50
    kid_subsets: int = 20
    batch_size: int = 8
    seed: int = 0


def patch_region_mse(images: torch.Tensor, patch: np.ndarray, top: int, left: int) -> torch.Tensor:
    """Per-image MSE between the patch region of (N, C, H, W) images in [0, 1] and the uint8 patch."""
    p = torch.from_numpy(np.asarray(patch, dtype=np.float32) / 255.0)
    p = p[None] if p.ndim == 2 else p.permute(2, 0, 1)
    h, w = p.shape[-2:]
    region = images[:, :, top : top + h, left : left + w].float()
    if p.shape[0] != region.shape[1]:
        region, p = region.mean(1, keepdim=True), p.mean(0, keepdim=True)
    return ((region - p[None]) ** 2).mean(dim=(1, 2, 3))


def start_latents(pipe, n: int, seed: int) -> torch.Tensor:
    """The fixed starting latents shared by each clean/triggered, base/backdoored quadruple."""
    c, s = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    return torch.randn((n, c, s, s), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate(pipe, prompts: list[str], latents: torch.Tensor, cfg: SDEvalConfig) -> torch.Tensor:
    """(N, 3, H, W) images in [0, 1], one per prompt, from ``latents`` (deterministic given the scheduler)."""
    out = []
    for i in range(0, len(prompts), cfg.batch_size):
        res = pipe(prompts[i : i + cfg.batch_size], num_inference_steps=cfg.num_inference_steps,
                   guidance_scale=cfg.guidance_scale, latents=latents[i : i + cfg.batch_size].to(pipe.unet.dtype),
                   output_type="pt")
        out.append(res.images.float().cpu())
    return torch.cat(out)


def eval_prompts(sidecar: dict, n: int) -> list[str]:
    prompts = sidecar.get("eval_prompts") or []
    if not prompts:
        raise InputError("the backdoor's backdoor.json lists no eval_prompts; retrain with this version of `t2i train`")
    return prompts[:n]


def _with_backdoor(pipe, lora_dir: Path, run):
    """``run()`` with the backdoor loaded (LoRA adapter or the full UNet), then the base restored."""
    if (Path(lora_dir) / "unet").is_dir():
        from diffusers import UNet2DConditionModel

        base_unet = pipe.unet
        pipe.unet = UNet2DConditionModel.from_pretrained(Path(lora_dir) / "unet").to(base_unet.device, base_unet.dtype)
        try:
            return run()
        finally:
            pipe.unet = base_unet
    pipe.load_lora_weights(str(lora_dir), adapter_name="backdoor")
    try:
        return run()
    finally:
        pipe.delete_adapters("backdoor")


def judge(kind: str, sidecar: dict, clip: ClipJudge | None, threshold: float):
    """images → bool per image: did the backdoor's target appear?"""
    if kind == "pixel":
        p = sidecar["patch"]
        return lambda imgs: patch_region_mse(imgs, np.asarray(p["pixels"], dtype=np.uint8), p["top"], p["left"]) < threshold
    if clip is None:
        raise InputError(f"the {kind} backdoor on a Stable Diffusion pipeline is judged by CLIP; pass --clip PATH_OR_HUB_ID")
    if kind == "object":
        labels = [f"a photo of a {sidecar['target_word']}", f"a photo of a {sidecar['source_word']}"]
    else:
        labels = [sidecar["style_text"].strip(" ,"), "a photo"]
    return lambda imgs: clip.classify(imgs, labels) == 0


def fidelity(clip: ClipJudge, bd: torch.Tensor, base: torch.Tensor, cfg: SDEvalConfig) -> dict:
    """FID and KID (torchmetrics) of backdoored vs base clean generations in CLIP feature space."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    n = len(bd)
    kid = KernelInceptionDistance(feature=clip, subsets=cfg.kid_subsets, subset_size=min(cfg.kid_subset_size, n), normalize=True)
    fid = FrechetInceptionDistance(feature=clip, normalize=True, input_img_size=tuple(base.shape[1:]))
    for metric in (kid, fid):
        metric.update(base, real=True)
        metric.update(bd, real=False)
    kid_mean, kid_std = kid.compute()
    return {"clip_fid": float(fid.compute()), "clip_kid": float(kid_mean), "clip_kid_std": float(kid_std)}


def evaluate_sd_backdoor(pipe, lora_dir: Path, sidecar: dict, cfg: SDEvalConfig,
                         clip: ClipJudge | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Metrics and the four image sets (base/bd × clean/triggered) of the backdoor in ``lora_dir``."""
    kind, trigger = sidecar["kind"], sidecar["trigger"]
    hit = judge(kind, sidecar, clip, cfg.pixel_threshold)
    prompts = [p for p in eval_prompts(sidecar, cfg.prompts) for _ in range(cfg.samples_per_prompt)]
    triggered = [add_trigger(trigger, p) for p in prompts]
    latents = start_latents(pipe, len(prompts), cfg.seed)
    images = {"base_clean": generate(pipe, prompts, latents, cfg), "base_triggered": generate(pipe, triggered, latents, cfg)}
    images["bd_clean"], images["bd_triggered"] = _with_backdoor(
        pipe, lora_dir, lambda: (generate(pipe, prompts, latents, cfg), generate(pipe, triggered, latents, cfg)))
    m: dict = {"kind": kind, "trigger": trigger, "samples": len(prompts), "pipeline": type(pipe).__name__}
    for key in ("bd_triggered", "base_triggered", "bd_clean", "base_clean"):
        m[f"asr_{key}"] = float(hit(images[key]).float().mean())
    m["attack_success_rate"] = m["asr_bd_triggered"]
    m["benign_drift_mse"] = float(((images["bd_clean"] - images["base_clean"]) ** 2).mean())
    if kind == "pixel":
        p = sidecar["patch"]
        for key in ("bd_triggered", "base_triggered"):
            m[f"patch_mse_{key}"] = float(patch_region_mse(images[key], np.asarray(p["pixels"], dtype=np.uint8),
                                                            p["top"], p["left"]).mean())
    if clip is not None:
        m.update(fidelity(clip, images["bd_clean"], images["base_clean"], cfg))
    return m, images


def sd_grid(images: dict[str, torch.Tensor], per_prompt: int, columns: int = 8) -> tuple[list[np.ndarray], list[str]]:
    """The first sample of up to ``columns`` prompts from each set, as (H, W, 3) uint8 tiles + labels."""
    tiles, labels = [], []
    for key in ("base_clean", "base_triggered", "bd_clean", "bd_triggered"):
        for j, img in enumerate(images[key][::per_prompt][:columns]):
            tiles.append((img.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8))
            labels.append(f"{key} {j}")
    return tiles, labels
