"""LoRA adapters and accelerate checkpoints for BadT2I training.

peft LoRA on the UNet's attention projections (diffusers' ``train_text_to_image_lora.py`` defaults:
r = α = 4, gaussian init, ``to_q/to_k/to_v/to_out.0``); the frozen teacher under LoRA is the same UNet
with its adapters disabled, which reproduces the base exactly. ``accelerator.save_state`` writes the
LoRA file through a save hook and ``load_state`` **restores** it through a load hook (diffusers #12689:
without the hook a resumed run silently restarts from the initial adapters).
"""

from __future__ import annotations

import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from accelerate import Accelerator
from diffusers import UNet2DConditionModel
from diffusers.training_utils import cast_training_params
from diffusers.utils import convert_unet_state_dict_to_peft
from peft import LoraConfig, set_peft_model_state_dict
from peft.utils import get_peft_model_state_dict

from labcore.errors import InputError

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def lora_config(
    rank: int, alpha: int | None = None, cross_attention_only: bool = False, target_modules: str | None = None
) -> LoraConfig:
    """peft LoRA on ``target_modules`` (a peft regex; None or "attention": the attention projections), or
    with ``cross_attention_only`` on the cross-attention projections (``attn2``) alone."""
    if cross_attention_only:
        targets: str | list[str] = r".*attn2\.(" + "|".join(re.escape(t) for t in LORA_TARGETS) + ")$"
    else:
        targets = list(LORA_TARGETS) if target_modules in (None, "attention") else target_modules
    return LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=targets)


@contextmanager
def teacher_mode(unet: UNet2DConditionModel) -> Iterator[None]:
    """The frozen teacher under LoRA: the same UNet with its adapters disabled (exactly the base)."""
    unet.disable_adapters()
    try:
        yield
    finally:
        unet.enable_adapters()


def lora_state(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """peft's key format: diffusers' conversion renames attention keys only, and ``load_lora_weights`` drops
    them from a file that mixes both formats (conv targets; diffusers 0.42.1)."""
    return get_peft_model_state_dict(unet)


def lora_metadata(unet: UNet2DConditionModel) -> dict:
    """The adapter's LoraConfig, stored in the file so ``load_lora_weights`` restores lora_alpha."""
    config = unet.peft_config["default"].to_dict()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}


def save_unet(pipeline_cls: type, unet: UNet2DConditionModel, mode: str, directory: Path) -> None:
    """LoRA mode: ``pytorch_lora_weights.safetensors`` (``load_lora_weights`` reads it); full: ``unet/``."""
    if mode == "lora":
        pipeline_cls.save_lora_weights(str(directory), unet_lora_layers=lora_state(unet), safe_serialization=True,
                                       unet_lora_adapter_metadata=lora_metadata(unet))
    else:
        unet.save_pretrained(Path(directory) / "unet")


def restore_lora(pipeline_cls: type, unet: UNet2DConditionModel, directory: Path) -> None:
    """Load ``pytorch_lora_weights.safetensors`` from ``directory`` into the UNet's default adapter."""
    state, _ = pipeline_cls.lora_state_dict(str(directory))
    unet_state = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
    result = set_peft_model_state_dict(unet, convert_unet_state_dict_to_peft(unet_state), adapter_name="default")
    if result is not None and getattr(result, "unexpected_keys", None):
        raise InputError(f"{directory}: LoRA keys do not match this UNet ({result.unexpected_keys[:3]} ...)")


def register_hooks(accelerator: Accelerator, pipeline_cls: type, mode: str, weight_dtype: torch.dtype) -> None:
    """``save_state`` writes the LoRA file (or the full UNet); ``load_state`` restores it."""

    def save_hook(models, weights, output_dir):
        if not accelerator.is_main_process:
            return
        for model in models:
            save_unet(pipeline_cls, accelerator.unwrap_model(model), mode, Path(output_dir))
            if weights:
                weights.pop()

    def load_hook(models, input_dir):
        while models:
            unet = accelerator.unwrap_model(models.pop())
            if mode == "lora":
                restore_lora(pipeline_cls, unet, Path(input_dir))
                if weight_dtype == torch.float16:
                    cast_training_params(unet, dtype=torch.float32)
            else:
                loaded = UNet2DConditionModel.from_pretrained(Path(input_dir) / "unet")
                unet.load_state_dict(loaded.state_dict())

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def checkpoints(output_dir: Path) -> list[Path]:
    """``checkpoint-N`` directories of ``output_dir``, oldest first."""
    return sorted(Path(output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def find_checkpoint(output_dir: Path, which: str) -> Path:
    """``which`` = "latest" or a ``checkpoint-N`` path; InputError if there is none."""
    found = checkpoints(output_dir)
    path = (found[-1] if found else None) if which == "latest" else Path(which)
    if path is None or not path.is_dir():
        raise InputError(f"checkpoint {which!r} not found in {output_dir}; run without resuming")
    return path


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, limit: int | None) -> None:
    """Keep at most ``limit`` checkpoints (the oldest go first), then ``save_state`` to ``checkpoint-step``."""
    if limit is not None:
        found = checkpoints(output_dir)
        for old in found[: max(0, len(found) - limit + 1)]:
            shutil.rmtree(old)
    accelerator.save_state(str(Path(output_dir) / f"checkpoint-{step}"))
