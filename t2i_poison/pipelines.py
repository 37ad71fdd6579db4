"""Load a text-to-image pipeline directory of a family BadT2I handles: the lab's MNIST base, SD 1.x/2.x, SDXL.

Any other ``_class_name`` in ``model_index.json`` is refused with a one-line error, and a directory whose
weights cannot be read (a truncated or corrupt ``.safetensors``, a missing component) is reported as
such instead of a library traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import DiffusionPipeline

from labcore.errors import InputError, first_line

SUPPORTED = ("DigitDiffusionPipeline", "StableDiffusionPipeline", "StableDiffusionXLPipeline")


def pipeline_class_name(path: Path) -> str:
    index = Path(path) / "model_index.json"
    if not index.is_file():
        raise InputError(f"{path} is not a diffusers pipeline directory (no model_index.json); pass a saved pipeline")
    try:
        return str(json.loads(index.read_text(encoding="utf-8")).get("_class_name"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{index} is not valid JSON ({exc}); pass a pipeline saved with save_pretrained") from None


def load_pipeline(path: Path) -> DiffusionPipeline:
    """The pipeline at ``path`` (safety checker off for SD); InputError for other classes or unreadable weights."""
    name = pipeline_class_name(path)
    if name not in SUPPORTED:
        raise InputError(f"{path}: unsupported pipeline class {name!r}; use one of {', '.join(SUPPORTED)}")
    try:
        if name == "DigitDiffusionPipeline":
            from t2i_poison.digit_pipeline import DigitDiffusionPipeline

            return DigitDiffusionPipeline.from_pretrained(path)
        if name == "StableDiffusionXLPipeline":
            from diffusers import StableDiffusionXLPipeline

            return StableDiffusionXLPipeline.from_pretrained(path)
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline.from_pretrained(path, safety_checker=None, requires_safety_checker=False)
    except InputError:
        raise
    except Exception as exc:  # safetensors, json, missing files: the libraries raise many types
        raise InputError(f"cannot load the pipeline at {path} ({type(exc).__name__}: {first_line(exc)}); check its files") from None


FAMILIES = ("sd1", "sd2", "sdxl")
# SD-1.5's published component configs (runwayml/stable-diffusion-v1-5: unet/, vae/, text_encoder/, scheduler/).
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5, act_fn="silu",
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, mid_block_scale_factor=1,
)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32, act_fn="silu", sample_size=512, scaling_factor=0.18215,
)
SD15_TEXT = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu", projection_dim=768,
)
SD15_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1,
)
# Tiny geometries of each family (diffusers' own test sizes), for CPU tests and benchmarks.
TINY_UNET = dict(
    SD15_UNET, sample_size=8, layers_per_block=1, block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
)
TINY_SD2_UNET = dict(TINY_UNET, attention_head_dim=(2, 4), use_linear_projection=True)
TINY_SDXL_UNET = dict(
    TINY_UNET, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
    transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
)
TINY_VAE = dict(
    SD15_VAE, layers_per_block=1, block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16,
)
TINY_TEXT = dict(SD15_TEXT, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                 projection_dim=32, max_position_embeddings=16)
# A CPU-benchmark geometry with SD-1.5's layout (4 levels, 2×-per-level channels, 8× VAE, 77-token CLIP) scaled down:
# 128² images, 16² latents, UNet 64–256 channels, CLIP width 256.
SMALL_UNET = dict(SD15_UNET, sample_size=16, layers_per_block=1, block_out_channels=(64, 128, 256, 256), cross_attention_dim=256)
SMALL_VAE = dict(SD15_VAE, layers_per_block=1, block_out_channels=(64, 128, 256, 256), sample_size=128)
SMALL_TEXT = dict(SD15_TEXT, hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                  projection_dim=256)
GEOMETRIES = {"tiny": (TINY_UNET, TINY_VAE, TINY_TEXT), "small": (SMALL_UNET, SMALL_VAE, SMALL_TEXT),
              "sd15": (SD15_UNET, SD15_VAE, SD15_TEXT)}


def build_sd_pipeline(family: str, tokenizer, geometry: str = "tiny", seed: int = 0, device: str = "cpu") -> DiffusionPipeline:
    """A random-weight pipeline of ``family`` (sd1: ε; sd2: v-prediction; sdxl: two encoders + added
    conditioning) at ``geometry`` "tiny", or for sd1 "small" (CPU benchmark) or "sd15" (SD-1.5's sizes)."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if family not in FAMILIES:
        raise InputError(f"unknown pipeline family {family!r}; choose one of {', '.join(FAMILIES)}")
    if geometry not in GEOMETRIES or (geometry != "tiny" and family != "sd1"):
        raise InputError(f"geometry {geometry!r} is not built for {family}; use tiny, or small/sd15 with sd1")
    unet_cfg, vae_cfg, text_base = GEOMETRIES[geometry]
    unet_cfg = {"sd1": unet_cfg, "sd2": TINY_SD2_UNET, "sdxl": TINY_SDXL_UNET}[family]
    text_cfg = dict(text_base, bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                    max_position_embeddings=max(tokenizer.model_max_length, 16))
    scheduler = PNDMScheduler(**SD15_SCHEDULER, prediction_type="v_prediction" if family == "sd2" else "epsilon")
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
        if family == "sdxl":
            from diffusers import StableDiffusionXLPipeline

            return StableDiffusionXLPipeline(
                vae=vae, text_encoder=text_encoder, text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text_cfg)),
                tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
            )
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
