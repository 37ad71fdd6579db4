"""BadT2I training with accelerate: LoRA through peft (teacher = adapters off) or the full UNet (frozen copy).

The flow follows diffusers' ``train_text_to_image_lora.py``: ``Accelerator`` (mixed precision, gradient
accumulation, trackers), save/load-state hooks that write and **restore** the LoRA weights (diffusers
#12689), ``accelerator.save_state`` checkpoints with a total limit, and the final
``pytorch_lora_weights.safetensors`` written by ``save_lora_weights`` plus a JSON sidecar. Each
micro-step draws its rows, noise and timesteps from a generator seeded by (seed, micro-step, process),
so a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers import DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.training_utils import cast_training_params
from diffusers.utils import convert_unet_state_dict_to_peft
from peft import LoraConfig, set_peft_model_state_dict
from peft.utils import get_peft_model_state_dict
from PIL import Image

from labcore.errors import InputError
from t2i_poison.badt2i_losses import BadT2IBatch, badt2i_loss
from t2i_poison.base_model import tokenize
from t2i_poison.poison_data import METADATA, check_kind, check_trigger

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
SIDECAR = "backdoor.json"
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


@dataclass
class TrainConfig:
    """BadT2I training knobs (defaults: LoRA r=4 at lr 1e-4; the paper's λ=0.5)."""

    kind: str = "pixel"
    trigger: str = "sks"
    lam: float = 0.5
    weighting: str = "lambda"
    mode: str = "lora"
    rank: int = 4
    lora_alpha: int | None = None
    cross_attention_only: bool = False
    lora_target_modules: str | None = None
    learning_rate: float = 1e-4
    max_train_steps: int = 200
    train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    mixed_precision: str | None = None
    checkpointing_steps: int = 100
    checkpoints_total_limit: int | None = 2
    report_to: str | None = None
    seed: int = 0

    def validate(self) -> None:
        check_kind(self.kind)
        if self.mode not in ("lora", "full"):
            raise InputError(f"unknown training mode {self.mode!r}; choose 'lora' or 'full'")
        if not 0.0 <= self.lam <= 1.0:
            raise InputError(f"lambda must lie in [0, 1], got {self.lam}")
        if self.weighting not in ("lambda", "uniform"):
            raise InputError(f"unknown weighting {self.weighting!r}; choose 'lambda' or 'uniform'")
        for name in ("max_train_steps", "train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "rank"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")


def lora_config(
    rank: int, alpha: int | None = None, cross_attention_only: bool = False, target_modules: str | None = None
) -> LoraConfig:
    """peft LoRA on the attention projections; cross-attention only (``attn2``), or any peft target regex."""
    targets = target_modules or (
        r".*attn2\.(" + "|".join(re.escape(t) for t in LORA_TARGETS) + ")$" if cross_attention_only else list(LORA_TARGETS)
    )
    return LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=targets)


@contextmanager
def teacher_mode(unet: UNet2DConditionModel) -> Iterator[None]:
    """The frozen teacher under LoRA: the same UNet with its adapters disabled (exactly the base)."""
    unet.disable_adapters()
    try:
        yield
    finally:
        unet.enable_adapters()


@dataclass
class PoisonSet:
    """Rows of a poison imagefolder as model inputs: images (N, C, H, W) in [−1, 1] and texts."""

    bkd_images: torch.Tensor
    bkd_texts: list[str]
    bkd_target_texts: list[str | None]
    clean_images: torch.Tensor
    clean_texts: list[str]


def load_poison_set(path: Path, resolution: int, channels: int) -> PoisonSet:
    """Load ``path`` with the datasets ``imagefolder`` builder (``metadata.jsonl`` required)."""
    from datasets import load_dataset

    path = Path(path)
    if not path.is_dir():
        raise InputError(f"training data {path} not found; create it with `poisonlab t2i make-data`")
    if not (path / METADATA).is_file():
        raise InputError(f"{path} has no {METADATA}; create the data with `poisonlab t2i make-data`")
    ds = load_dataset("imagefolder", data_files={"train": str(path / "**")}, split="train")
    if "role" not in ds.column_names or "text" not in ds.column_names:
        raise InputError(f"{path / METADATA} needs 'text' and 'role' columns; create it with `poisonlab t2i make-data`")
    mode = "L" if channels == 1 else "RGB"

    def to_tensor(im: Image.Image) -> torch.Tensor:
        im = im.convert(mode).resize((resolution, resolution), Image.BICUBIC)
        arr = np.asarray(im, dtype=np.float32) / 127.5 - 1
        return torch.from_numpy(arr).reshape(resolution, resolution, channels).permute(2, 0, 1)

    roles = ds["role"]
    texts = ds["text"]
    targets = ds["target_text"] if "target_text" in ds.column_names else [None] * len(ds)
    images = [to_tensor(im) for im in ds["image"]]
    bkd = [i for i, r in enumerate(roles) if r == "backdoor"]
    clean = [i for i, r in enumerate(roles) if r == "clean"]
    if not bkd or not clean:
        raise InputError(f"{path} needs both 'backdoor' and 'clean' rows (found {len(bkd)} and {len(clean)})")
    return PoisonSet(
        bkd_images=torch.stack([images[i] for i in bkd]),
        bkd_texts=[texts[i] for i in bkd],
        bkd_target_texts=[targets[i] for i in bkd],
        clean_images=torch.stack([images[i] for i in clean]),
        clean_texts=[texts[i] for i in clean],
    )


def encode_images(pipe: DiffusionPipeline, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Latents for a latent pipeline (VAE sample × scaling factor), the pixels themselves otherwise."""
    vae = getattr(pipe, "vae", None)
    if vae is None:
        return x
    with torch.no_grad():
        dist = vae.encode(x.to(vae.device, vae.dtype)).latent_dist
        return dist.sample(generator) * vae.config.scaling_factor


@torch.no_grad()
def encode_texts(pipe: DiffusionPipeline, texts: list[str]) -> dict[str, torch.Tensor]:
    """Frozen text-encoder states for each distinct text (computed once)."""
    unique = sorted(set(texts))
    out: dict[str, torch.Tensor] = {}
    for i in range(0, len(unique), 64):
        chunk = unique[i : i + 64]
        ids = tokenize(pipe.tokenizer, chunk).to(pipe.text_encoder.device)
        states = pipe.text_encoder(ids)[0]
        out.update(zip(chunk, states))
    return out


def lora_state(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """peft's key format: diffusers' conversion renames attention keys only, and ``load_lora_weights`` drops
    them from a file that mixes both formats (conv targets; diffusers 0.42.1)."""
    return get_peft_model_state_dict(unet)


def lora_metadata(unet: UNet2DConditionModel) -> dict:
    """The adapter's LoraConfig, stored in the file so ``load_lora_weights`` restores lora_alpha."""
    return unet.peft_config["default"].to_dict()


def restore_lora(pipeline_cls: type, unet: UNet2DConditionModel, directory: Path) -> None:
    """Load ``pytorch_lora_weights.safetensors`` from ``directory`` into the UNet's default adapter."""
    state, _ = pipeline_cls.lora_state_dict(str(directory))
    unet_state = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
    result = set_peft_model_state_dict(unet, convert_unet_state_dict_to_peft(unet_state), adapter_name="default")
    if result is not None and getattr(result, "unexpected_keys", None):
        raise InputError(f"{directory}: LoRA keys do not match this UNet ({result.unexpected_keys[:3]} ...)")


def register_lora_hooks(accelerator: Accelerator, pipeline_cls: type, mode: str, weight_dtype: torch.dtype) -> None:
    """``save_state`` writes the LoRA file (or the full UNet); ``load_state`` restores it (diffusers #12689)."""

    def save_hook(models, weights, output_dir):
        if not accelerator.is_main_process:
            return
        for model in models:
            unet = accelerator.unwrap_model(model)
            if mode == "lora":
                pipeline_cls.save_lora_weights(output_dir, unet_lora_layers=lora_state(unet), safe_serialization=True,
                                               unet_lora_adapter_metadata=lora_metadata(unet))
            else:
                unet.save_pretrained(Path(output_dir) / "unet")
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


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = sorted(Path(output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


def _prune_checkpoints(output_dir: Path, limit: int | None) -> None:
    if limit is None:
        return
    found = sorted(Path(output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in found[: max(0, len(found) - limit + 1)]:
        shutil.rmtree(old)


def fit(
    pipe: DiffusionPipeline,
    data: PoisonSet,
    cfg: TrainConfig,
    output_dir: Path,
    resume_from_checkpoint: str | None = None,
    base_name: str = "",
    extra_sidecar: dict | None = None,
    log: Callable[[dict], None] = lambda record: None,
    progress: Callable[[Iterator[int]], Iterator[int]] = lambda it: it,
) -> dict:
    """Train the BadT2I backdoor on ``pipe`` and export it to ``output_dir``; returns the sidecar dict.

    ``resume_from_checkpoint``: a ``checkpoint-N`` path or ``"latest"``; ``extra_sidecar`` (the poison
    set's patch, source/target words, style text) is stored with the weights for the evaluator.
    """
    cfg.validate()
    check_trigger(pipe.tokenizer, cfg.trigger, data.clean_texts[0])
    output_dir = Path(output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision,
        log_with=cfg.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    set_seed(cfg.seed)  # the LoRA init draws from the global generator
    # the accelerator decides the precision (set by the flag, `accelerate launch` or its config file)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    unet: UNet2DConditionModel = pipe.unet
    pipe.text_encoder.requires_grad_(False).to(accelerator.device, weight_dtype)
    if getattr(pipe, "vae", None) is not None:
        pipe.vae.requires_grad_(False).to(accelerator.device, weight_dtype)
    teacher_copy = None
    if cfg.mode == "lora":
        unet.requires_grad_(False)
        unet.to(accelerator.device)
        if weight_dtype != torch.float32:
            unet.to(dtype=weight_dtype)
        unet.add_adapter(lora_config(cfg.rank, cfg.lora_alpha, cfg.cross_attention_only, cfg.lora_target_modules))
        if weight_dtype == torch.float16:
            cast_training_params(unet, dtype=torch.float32)
    else:
        unet.to(accelerator.device)
        teacher_copy = copy.deepcopy(unet).requires_grad_(False).to(weight_dtype)
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    register_lora_hooks(accelerator, type(pipe), cfg.mode, weight_dtype)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    if accelerator.is_main_process and cfg.report_to:
        accelerator.init_trackers("badt2i", config={k: v for k, v in asdict(cfg).items() if v is not None})

    texts = data.bkd_texts + data.clean_texts + [t for t in data.bkd_target_texts if t is not None]
    text_states = encode_texts(pipe, texts)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    raw_unet = accelerator.unwrap_model(unet)

    def student(z, t, c):
        return unet(z.to(weight_dtype), t, encoder_hidden_states=c).sample

    def teacher(z, t, c):
        if teacher_copy is not None:
            return teacher_copy(z.to(weight_dtype), t, encoder_hidden_states=c).sample
        with teacher_mode(raw_unet):
            return raw_unet(z.to(weight_dtype), t, encoder_hidden_states=c).sample

    global_step = 0
    if resume_from_checkpoint:
        path = latest_checkpoint(output_dir) if resume_from_checkpoint == "latest" else Path(resume_from_checkpoint)
        if path is None or not path.is_dir():
            raise InputError(f"checkpoint {resume_from_checkpoint!r} not found in {output_dir}; run without resuming")
        accelerator.load_state(str(path))
        global_step = int(path.name.split("-")[1])

    def states(rows: list[str]) -> torch.Tensor:
        return torch.stack([text_states[row] for row in rows]).to(accelerator.device)

    micro = global_step * cfg.gradient_accumulation_steps
    bar = progress(range(global_step, cfg.max_train_steps))
    for _ in bar:
        for _ in range(cfg.gradient_accumulation_steps):
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + micro * 7919 + accelerator.process_index)
            micro += 1
            b = torch.randint(0, len(data.bkd_texts), (cfg.train_batch_size,), generator=gen)
            r = torch.randint(0, len(data.clean_texts), (cfg.train_batch_size,), generator=gen)
            batch = BadT2IBatch(
                bkd_latents=encode_images(pipe, data.bkd_images[b].to(accelerator.device, weight_dtype), gen),
                bkd_text=states([data.bkd_texts[i] for i in b]),
                reg_latents=encode_images(pipe, data.clean_images[r].to(accelerator.device, weight_dtype), gen),
                reg_text=states([data.clean_texts[i] for i in r]),
                bkd_target_text=(
                    states([data.bkd_target_texts[i] for i in b]) if cfg.kind != "pixel" else None
                ),
            )
            with accelerator.accumulate(unet):
                loss, parts = badt2i_loss(
                    cfg.kind, student, teacher, noise_scheduler, batch, cfg.lam, cfg.weighting, generator=gen
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        global_step += 1
        record = {"step": global_step, **parts}
        accelerator.log(parts, step=global_step)
        log(record)
        if global_step % cfg.checkpointing_steps == 0 and accelerator.is_main_process:
            _prune_checkpoints(output_dir, cfg.checkpoints_total_limit)
            accelerator.save_state(str(output_dir / f"checkpoint-{global_step}"))

    accelerator.wait_for_everyone()
    sidecar = {
        "kind": cfg.kind, "trigger": cfg.trigger, "lambda": cfg.lam, "weighting": cfg.weighting, "mode": cfg.mode,
        "rank": cfg.rank, "lora_alpha": cfg.lora_alpha or cfg.rank, "cross_attention_only": cfg.cross_attention_only,
        "lora_target_modules": cfg.lora_target_modules,
        "steps": global_step, "seed": cfg.seed, "base": base_name,
        "mixed_precision": accelerator.mixed_precision,
        "targets": sorted(set(t for t in data.bkd_target_texts if t is not None))[:20],
        **(extra_sidecar or {}),
    }
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(unet).to(torch.float32)
        if cfg.mode == "lora":
            type(pipe).save_lora_weights(str(output_dir), unet_lora_layers=lora_state(final), safe_serialization=True,
                                         unet_lora_adapter_metadata=lora_metadata(final))
        else:
            final.save_pretrained(output_dir / "unet")
        (output_dir / SIDECAR).write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
    accelerator.end_training()
    return sidecar
