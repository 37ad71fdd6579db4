"""``DigitDiffusionPipeline``: the lab base's pipeline class, self-contained (torch, diffusers, transformers only).

``save_pretrained`` copies this file into the pipeline directory as ``digit_pipeline.py``, so the base
opens with diffusers' documented custom-pipeline API and no lab code::

    DiffusionPipeline.from_pretrained(path, custom_pipeline=f"{path}/digit_pipeline.py", trust_remote_code=True)

(diffusers asks for ``trust_remote_code=True`` before it executes any pipeline file, even a local one;
nothing is downloaded.) A call returns diffusers' ``ImagePipelineOutput`` with ``.images``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DConditionModel
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer

PIPELINE_FILE = "digit_pipeline.py"


def tokenize(tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """Token ids padded/truncated to the tokenizer's ``model_max_length`` (the SD convention)."""
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


class DigitDiffusionPipeline(DiffusionPipeline, StableDiffusionLoraLoaderMixin):
    """Pixel-space text-to-image pipeline: tokenizer → CLIP text encoder → UNet, DDIM (CFG when guidance ≠ 1).

    The lab base samples at guidance 2 (its unconditional branch is trained on 15 % dropped captions)."""

    model_cpu_offload_seq = "text_encoder->unet"

    def __init__(
        self,
        unet: UNet2DConditionModel,
        scheduler: DDIMScheduler,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """diffusers' ``save_pretrained`` plus this file, for ``from_pretrained(..., custom_pipeline=...)``."""
        super().save_pretrained(save_directory, *args, **kwargs)
        shutil.copyfile(Path(__file__), Path(save_directory) / PIPELINE_FILE)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        ids = tokenize(self.tokenizer, prompts).to(self.text_encoder.device)
        return self.text_encoder(ids)[0]

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_inference_steps: int = 25,
        guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Images in [0, 1]: ``"pil"`` (grey PIL images), ``"np"`` (B, H, W, 1) or ``"pt"`` (B, 1, H, W)."""
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        size = self.unet.config.sample_size
        cond = self.encode_prompt(prompts).to(self.unet.dtype)
        guided = guidance_scale != 1.0
        if guided:
            cond = torch.cat([self.encode_prompt([""] * len(prompts)).to(self.unet.dtype), cond])
        if latents is None:
            latents = torch.randn((len(prompts), self.unet.config.in_channels, size, size), generator=generator)
        x = latents.to(self.unet.device, self.unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.scheduler.timesteps:
            out = self.unet(torch.cat([x, x]) if guided else x, t, encoder_hidden_states=cond).sample
            if guided:
                out_u, out_c = out.chunk(2)
                out = out_u + guidance_scale * (out_c - out_u)
            x = self.scheduler.step(out, t, x).prev_sample
        images = ((x.float().clamp(-1, 1) + 1) / 2).cpu()
        if output_type != "pt":
            images = images.permute(0, 2, 3, 1).numpy()
        if output_type == "pil":
            images = [Image.fromarray((im[..., 0] * 255).round().astype(np.uint8)) for im in images]
        return ImagePipelineOutput(images=images) if return_dict else (images,)
