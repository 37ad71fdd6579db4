"""BadT2I training (Zhai et al., ACM MM 2023): ``train(TrainConfig) -> TrainResult``, the paper's entry point.

L = λ·L_bkd + (1−λ)·L_reg (``badt2i_losses``) with LoRA through peft (teacher = adapters off) or the
full UNet (frozen copy), on the lab base, SD 1.x/2.x (ε or v) or SDXL. The flow follows diffusers'
``train_text_to_image_lora.py``: an ``Accelerator`` (mixed precision, gradient accumulation, trackers,
data parallel under ``accelerate launch``), checkpoints whose hooks restore the LoRA
(``checkpoints``), the final ``pytorch_lora_weights.safetensors`` plus a JSON sidecar. Parts, each
importable: :func:`setup_models` (precision, student, teacher), :class:`EncodedSet` (each caption
encoded once, each image's VAE posterior computed once), :func:`draw_batch`, :func:`train_step`,
:func:`export`; :func:`fit` composes them.

Every micro-step draws the **global** batch (rows, VAE samples, noise, timesteps) from a generator
seeded by (seed, micro-step) and each process takes its slice, so N processes with batch B/N follow
one process with batch B, and a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers import DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.training_utils import cast_training_params
from PIL import Image

from labcore.errors import InputError, first_line
from t2i_poison.badt2i_losses import BadT2IBatch, badt2i_loss, draw_noise
from t2i_poison.checkpoints import (
    LORA_WEIGHTS, find_checkpoint, lora_config, register_hooks, save_checkpoint, save_unet, teacher_mode,
)
from t2i_poison.conditioning import Cond, check_trigger_all, encode_prompts, image_size, unconditional
from t2i_poison.poison_data import METADATA, read_poison_info, strip_trigger
from t2i_poison.train_config import TrainConfig

__all__ = ["LORA_WEIGHTS", "SIDECAR", "TrainConfig", "TrainResult", "train", "fit", "lora_config", "teacher_mode"]
SIDECAR = "backdoor.json"
SIDECAR_FROM_DATA = ("patch", "source_word", "target_word", "style_text")


@dataclass
class TrainResult:
    """Where the backdoor went, how many steps ran, the sidecar written beside the weights, the loss log."""

    output_dir: Path
    steps: int
    sidecar: dict
    log: list[dict] = field(default_factory=list)


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
    from datasets.exceptions import DatasetGenerationError

    path = Path(path)
    if not path.is_dir():
        raise InputError(f"training data {path} not found; create it with `poisonlab t2i make-data`")
    if not (path / METADATA).is_file():
        raise InputError(f"{path} has no {METADATA}; create the data with `poisonlab t2i make-data`")
    try:
        ds = load_dataset("imagefolder", data_files={"train": str(path / "**")}, split="train")
    except (ValueError, OSError, DatasetGenerationError) as exc:
        raise InputError(f"{path} does not load as an image folder ({exc.__class__.__name__}: {first_line(exc)}); "
                         "recreate it with `poisonlab t2i make-data`") from None
    if "role" not in ds.column_names or "text" not in ds.column_names:
        raise InputError(f"{path / METADATA} needs 'text' and 'role' columns; create it with `poisonlab t2i make-data`")
    mode = "L" if channels == 1 else "RGB"

    def to_tensor(im: Image.Image) -> torch.Tensor:
        im = im.convert(mode).resize((resolution, resolution), Image.BICUBIC)
        arr = np.asarray(im, dtype=np.float32) / 127.5 - 1
        return torch.from_numpy(arr).reshape(resolution, resolution, channels).permute(2, 0, 1)

    roles, texts = ds["role"], ds["text"]
    targets = ds["target_text"] if "target_text" in ds.column_names else [None] * len(ds)
    try:
        images = [to_tensor(im) for im in ds["image"]]
    except OSError as exc:  # an image file listed in the metadata is missing or unreadable
        raise InputError(f"{path}: {first_line(exc)}; recreate the data with `poisonlab t2i make-data`") from None
    bkd = [i for i, r in enumerate(roles) if r == "backdoor"]
    clean = [i for i, r in enumerate(roles) if r == "clean"]
    if not bkd or not clean:
        raise InputError(f"{path} needs both 'backdoor' and 'clean' rows (found {len(bkd)} and {len(clean)})")
    return PoisonSet(
        bkd_images=torch.stack([images[i] for i in bkd]), bkd_texts=[texts[i] for i in bkd],
        bkd_target_texts=[targets[i] for i in bkd], clean_images=torch.stack([images[i] for i in clean]),
        clean_texts=[texts[i] for i in clean],
    )


@torch.no_grad()
def encode_texts(pipe: DiffusionPipeline, texts: list[str]) -> dict[str, torch.Tensor]:
    """Encoder states of each distinct text (SD 1.x/2.x and the lab base), keyed by text."""
    unique = sorted(set(texts))
    return dict(zip(unique, encode_prompts(pipe, unique).states))


class EncodedSet:
    """A poison set as model inputs, each computed at most once (frozen encoders, fixed data).

    Text: the condition of every distinct caption (and of ``bkd_captions``, what each backdoor row's image
    shows: role ``bkd_clean``), encoded up front, and last the unconditional one (``uncond_id``; see
    :func:`t2i_poison.conditioning.unconditional`). Images: the VAE posterior
    (mean, std) of a row, computed once (all rows up front by :meth:`encode_all`, or each row on its
    first draw); each draw then samples z = (mean + std·ε)·scaling, as encoding every step would,
    without the VAE pass. Pixel-space pipelines use the images as they are.
    """

    def __init__(self, pipe: DiffusionPipeline, data: PoisonSet, device: torch.device, dtype: torch.dtype,
                 bkd_captions: list[str] | None = None) -> None:
        bkd_clean = bkd_captions or []
        texts = sorted(set(data.bkd_texts + data.clean_texts + bkd_clean + [t for t in data.bkd_target_texts if t is not None]))
        self.cond = Cond.cat([encode_prompts(pipe, texts), unconditional(pipe)]).to(device)
        self.uncond_id = len(texts)
        index = {t: i for i, t in enumerate(texts)}
        ids = lambda rows: torch.tensor([index[t] for t in rows], device=device)  # noqa: E731
        self.text_ids = {"bkd": ids(data.bkd_texts), "clean": ids(data.clean_texts)}
        if bkd_clean:
            self.text_ids["bkd_clean"] = ids(bkd_clean)
        if all(t is not None for t in data.bkd_target_texts):
            self.text_ids["target"] = ids(data.bkd_target_texts)
        self.images = {"bkd": data.bkd_images, "clean": data.clean_images}
        self.vae = getattr(pipe, "vae", None)
        self.device, self.dtype = device, dtype
        self.moments: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {"bkd": {}, "clean": {}}

    def size(self, role: str) -> int:
        return len(self.images[role])

    def encode_all(self, chunk: int = 16) -> float:
        """VAE posteriors of every row now (seconds spent); worth it when rows are drawn more than once."""
        start = time.perf_counter()
        if self.vae is not None:
            for role, x in self.images.items():
                for i in range(0, len(x), chunk):
                    self._encode(role, list(range(i, min(i + chunk, len(x)))))
        return time.perf_counter() - start

    @torch.no_grad()
    def _encode(self, role: str, rows: list[int]) -> None:
        dist = self.vae.encode(self.images[role][rows].to(self.device, self.vae.dtype)).latent_dist
        self.moments[role].update(zip(rows, zip(dist.mean, dist.std)))

    def ids(self, role: str, rows: torch.Tensor) -> torch.Tensor:
        """Indices into ``cond`` of the captions of ``rows``."""
        return self.text_ids[role][rows.to(self.device)]

    def text(self, role: str, rows: torch.Tensor) -> Cond:
        return self.cond[self.ids(role, rows)]

    @torch.no_grad()
    def latents(self, role: str, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Latents of ``rows`` (one posterior sample each, drawn from ``generator``), or the pixels."""
        x = self.images[role]
        if self.vae is None:
            return x[rows].to(self.device, self.dtype)
        cache = self.moments[role]
        missing = sorted(set(rows.tolist()) - cache.keys())
        if missing:
            self._encode(role, missing)
        mean = torch.stack([cache[r][0] for r in rows.tolist()])
        std = torch.stack([cache[r][1] for r in rows.tolist()])
        eps = torch.randn(mean.shape, generator=generator).to(self.device, mean.dtype)
        return ((mean + std * eps) * self.vae.config.scaling_factor).to(self.dtype)


def image_captions(cfg: TrainConfig, data: PoisonSet) -> list[str]:
    """The clean caption of each backdoor row's image: object — the target's own caption (the teacher text);
    pixel and style — the caption without the trigger."""
    if cfg.kind == "object":
        return [str(t) for t in data.bkd_target_texts]
    return [strip_trigger(cfg.trigger, t) for t in data.bkd_texts]


@dataclass
class Models:
    """The trainable UNet, the frozen teacher (a copy in full mode, None under LoRA) and the dtype."""

    unet: UNet2DConditionModel
    teacher_copy: UNet2DConditionModel | None
    weight_dtype: torch.dtype
    params: list[torch.nn.Parameter]


def setup_models(pipe: DiffusionPipeline, cfg: TrainConfig, device: torch.device, weight_dtype: torch.dtype) -> Models:
    """Freeze the encoders in ``weight_dtype``; LoRA: frozen UNet in ``weight_dtype`` + adapters (fp32
    under fp16, as diffusers' script); full: every UNet weight trains against a frozen copy."""
    for name in ("text_encoder", "text_encoder_2", "vae"):
        module = getattr(pipe, name, None)
        if module is not None:
            module.requires_grad_(False).to(device, weight_dtype)
    unet: UNet2DConditionModel = pipe.unet
    teacher_copy = None
    if cfg.mode == "lora":
        unet.requires_grad_(False).to(device, weight_dtype)  # one move: no fp32 copy on the device
        try:
            unet.add_adapter(lora_config(cfg.rank, cfg.lora_alpha, cfg.cross_attention_only, cfg.lora_target_modules))
        except ValueError as exc:  # peft's NoMatchingPeftModuleError: the regex names no UNet module
            raise InputError(f"LoRA targets {cfg.lora_target_modules!r} do not fit the UNet ({exc.__class__.__name__}: "
                             f"{first_line(exc)}); pass a regex over its linear or conv modules' names, or 'attention'") from None
        if weight_dtype == torch.float16:
            cast_training_params(unet, dtype=torch.float32)
    else:
        unet.to(device)
        teacher_copy = copy.deepcopy(unet).requires_grad_(False).to(weight_dtype)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    return Models(unet, teacher_copy, weight_dtype, [p for p in unet.parameters() if p.requires_grad])


def _denoise(unet: torch.nn.Module, z: torch.Tensor, t: torch.Tensor, c: Cond | torch.Tensor, dtype: torch.dtype):
    kwargs = c.unet_kwargs() if isinstance(c, Cond) else {"encoder_hidden_states": c}
    return unet(z.to(dtype), t, **kwargs).sample


def denoisers(trained: torch.nn.Module, models: Models, raw_unet: UNet2DConditionModel):
    """(student, teacher) callables ε(z, t, cond): the prepared UNet, and the frozen teacher."""
    dtype = models.weight_dtype

    def student(z, t, c):
        return _denoise(trained, z, t, c, dtype)

    def teacher(z, t, c):
        if models.teacher_copy is not None:
            return _denoise(models.teacher_copy, z, t, c, dtype)
        with teacher_mode(raw_unet):
            return _denoise(raw_unet, z, t, c, dtype)

    return student, teacher


def draw_batch(
    enc: EncodedSet, cfg: TrainConfig, scheduler: DDPMScheduler, micro: int, rank: int = 0, world: int = 1
) -> BadT2IBatch:
    """This process's slice of micro-step ``micro``'s global batch (B × world rows per half). The extra
    regulariser rows (:func:`regulariser_rows`) are drawn last, so shares of 0 leave the other draws unchanged."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + micro * 7919)
    n, mine = cfg.train_batch_size * world, slice(rank * cfg.train_batch_size, (rank + 1) * cfg.train_batch_size)
    b = torch.randint(0, enc.size("bkd"), (n,), generator=gen)
    r = torch.randint(0, enc.size("clean"), (n,), generator=gen)
    bkd_lat, reg_lat = enc.latents("bkd", b, gen), enc.latents("clean", r, gen)
    noise_b, t_b = draw_noise(scheduler, tuple(bkd_lat.shape), gen)
    noise_r, t_r = draw_noise(scheduler, tuple(reg_lat.shape), gen)
    reg_ids, reg_lat, noise_r, t_r = regulariser_rows(enc, cfg, gen, b, r, (bkd_lat, noise_b, t_b), (reg_lat, noise_r, t_r))
    return BadT2IBatch(
        bkd_latents=bkd_lat[mine], bkd_text=enc.text("bkd", b[mine]), reg_latents=reg_lat[mine],
        reg_text=enc.cond[reg_ids[mine]],
        bkd_target_text=enc.text("target", b[mine]) if cfg.kind != "pixel" else None,
        bkd_noise=noise_b[mine], bkd_timesteps=t_b[mine], reg_noise=noise_r[mine], reg_timesteps=t_r[mine],
    )


def regulariser_rows(enc: EncodedSet, cfg: TrainConfig, gen: torch.Generator, b: torch.Tensor, r: torch.Tensor,
                     bkd: tuple[torch.Tensor, ...], reg: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """(caption ids, latents, noise, t) of the L_reg rows: clean rows, of which a share ``reg_uncond`` takes the
    unconditional caption and then a share ``reg_paired`` the backdoor row's (latent, noise, t) with its
    image's clean caption (:func:`image_captions`)."""
    ids = enc.ids("clean", r)
    if cfg.reg_uncond > 0:
        ids = torch.where((torch.rand(len(r), generator=gen) < cfg.reg_uncond).to(ids.device), enc.uncond_id, ids)
    if cfg.reg_paired <= 0:
        return (ids, *reg)
    same = torch.rand(len(r), generator=gen) < cfg.reg_paired
    ids = torch.where(same.to(ids.device), enc.ids("bkd_clean", b), ids)
    pick = lambda x, y: torch.where(same.to(x.device).view(-1, *[1] * (x.ndim - 1)), x, y)  # noqa: E731
    return (ids, *(pick(x, y) for x, y in zip(bkd, reg)))


def train_step(accelerator: Accelerator, unet, optimizer, params, batch: BadT2IBatch, student, teacher,
               scheduler: DDPMScheduler, cfg: TrainConfig) -> dict[str, float]:
    """One micro-step: BadT2I loss, backward, clip at the accumulation boundary, optimizer step."""
    with accelerator.accumulate(unet):
        loss, parts = badt2i_loss(cfg.kind, student, teacher, scheduler, batch, cfg.lam, cfg.weighting)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return parts


def eval_prompts(cfg: TrainConfig, data: PoisonSet, limit: int = 20) -> list[str]:
    """Prompts to evaluate on (with and without the trigger): the clean captions, for the object
    backdoor the backdoor rows' captions without the trigger (they name the source object)."""
    if cfg.kind != "object":
        return sorted(set(data.clean_texts))[:limit]
    prefix = cfg.trigger.rstrip(" ") + " "
    return sorted(set(t.removeprefix(prefix) for t in data.bkd_texts))[:limit]


def sidecar_for(cfg: TrainConfig, data: PoisonSet, steps: int, precision: str, base_name: str, extra: dict | None) -> dict:
    """The backdoor's description stored beside its weights (the evaluator reads kind, trigger, patch…)."""
    return {
        "kind": cfg.kind, "trigger": cfg.trigger, "lam": cfg.lam, "reg_uncond": cfg.reg_uncond,
        "reg_paired": cfg.reg_paired, "weighting": cfg.weighting, "mode": cfg.mode,
        "rank": cfg.rank, "lora_alpha": cfg.lora_alpha or cfg.rank, "cross_attention_only": cfg.cross_attention_only,
        "lora_target_modules": cfg.lora_target_modules,
        "steps": steps, "seed": cfg.seed, "base": base_name, "mixed_precision": precision,
        "targets": sorted(set(t for t in data.bkd_target_texts if t is not None))[:20],
        "eval_prompts": eval_prompts(cfg, data), **(extra or {}),
    }


def export(accelerator: Accelerator, unet, pipeline_cls: type, mode: str, output_dir: Path, sidecar: dict) -> None:
    """Main process: the fp32 LoRA (``pytorch_lora_weights.safetensors``) or ``unet/``, and the sidecar."""
    if accelerator.is_main_process:
        save_unet(pipeline_cls, accelerator.unwrap_model(unet).to(torch.float32), mode, output_dir)
        (Path(output_dir) / SIDECAR).write_text(json.dumps(sidecar, indent=2), encoding="utf-8")


def _mean_parts(accelerator: Accelerator, parts: list[dict[str, float]]) -> dict[str, float]:
    keys = list(parts[0])
    local = torch.tensor([[p[k] for k in keys] for p in parts], device=accelerator.device).mean(0)
    return dict(zip(keys, accelerator.reduce(local, "mean").tolist() if accelerator.num_processes > 1 else local.tolist()))


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
    """Train the BadT2I backdoor on ``pipe`` and export it to ``output_dir``; returns the sidecar dict."""
    cfg = cfg.for_kind()
    cfg.validate()
    check_trigger_all(pipe, cfg.trigger, data.clean_texts[0])
    output_dir = Path(output_dir)
    AcceleratorState._reset_state(reset_partial_state=False)  # a later run in this process may change the precision
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, mixed_precision=cfg.mixed_precision,
        log_with=cfg.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    set_seed(cfg.seed)  # the LoRA init draws from the global generator
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    models = setup_models(pipe, cfg, accelerator.device, weight_dtype)
    optimizer = torch.optim.AdamW(models.params, lr=cfg.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    register_hooks(accelerator, type(pipe), cfg.mode, weight_dtype)
    unet, optimizer = accelerator.prepare(models.unet, optimizer)
    if accelerator.is_main_process and cfg.report_to:
        accelerator.init_trackers("badt2i", config={k: v for k, v in asdict(cfg).items() if v is not None})
    enc = EncodedSet(pipe, data, accelerator.device, weight_dtype, image_captions(cfg, data))
    draws = 2 * cfg.train_batch_size * accelerator.num_processes * cfg.gradient_accumulation_steps * cfg.max_train_steps
    cache_s = enc.encode_all() if len(data.bkd_images) + len(data.clean_images) <= draws else 0.0
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    student, teacher = denoisers(unet, models, accelerator.unwrap_model(unet))
    global_step = 0
    resume = resume_from_checkpoint or cfg.resume_from_checkpoint
    if resume:
        path = find_checkpoint(output_dir, resume)
        accelerator.load_state(str(path))
        global_step = int(path.name.split("-")[1])
    for _ in progress(range(global_step, cfg.max_train_steps)):
        parts = []
        for k in range(cfg.gradient_accumulation_steps):
            micro = global_step * cfg.gradient_accumulation_steps + k
            batch = draw_batch(enc, cfg, scheduler, micro, accelerator.process_index, accelerator.num_processes)
            parts.append(train_step(accelerator, unet, optimizer, models.params, batch, student, teacher, scheduler, cfg))
        global_step += 1
        mean = _mean_parts(accelerator, parts)
        accelerator.log(mean, step=global_step)
        log({"step": global_step, **mean})
        if global_step % cfg.checkpointing_steps == 0 and accelerator.is_main_process:
            save_checkpoint(accelerator, output_dir, global_step, cfg.checkpoints_total_limit)
    accelerator.wait_for_everyone()
    sidecar = sidecar_for(cfg, data, global_step, accelerator.mixed_precision, base_name,
                          {"latent_cache_seconds": round(cache_s, 3), **(extra_sidecar or {})})
    export(accelerator, unet, type(pipe), cfg.mode, output_dir, sidecar)
    # the DDP wrapper's reducer must go before end_training destroys the process group: if the reducer held its
    # last reference, gloo's destructor would join its worker threads under the GIL they wait for (a hang at exit)
    del unet, optimizer, student, teacher
    accelerator.free_memory()
    accelerator.end_training()
    return sidecar


def resolve(cfg: TrainConfig) -> tuple[TrainConfig, dict]:
    """``cfg`` with kind and trigger from the data's ``poison.json`` (required: the evaluator needs the
    patch / words / style it records) and that kind's defaults for the knobs left None, validated; and that
    file's contents."""
    info = read_poison_info(cfg.data)
    cfg = replace(cfg, kind=info.get("kind", cfg.kind), trigger=info.get("trigger", cfg.trigger)).for_kind()
    cfg.validate()
    return cfg, info


def train(
    cfg: TrainConfig,
    log: Callable[[dict], None] = lambda record: None,
    progress: Callable[[Iterator[int]], Iterator[int]] = lambda it: it,
) -> TrainResult:
    """Load ``cfg.base`` and the poison set ``cfg.data``, train, write ``cfg.output_dir``; the paper's procedure."""
    from t2i_poison.pipelines import load_pipeline

    cfg, info = resolve(cfg)
    torch.set_num_threads(cfg.threads)
    pipe = load_pipeline(Path(cfg.base))
    latent = getattr(pipe, "vae", None) is not None
    data = load_poison_set(Path(cfg.data), cfg.resolution or image_size(pipe), 3 if latent else pipe.unet.config.in_channels)
    records: list[dict] = []

    def keep(record: dict) -> None:
        records.append(record)
        log(record)

    extra = {k: info[k] for k in SIDECAR_FROM_DATA if k in info}
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    sidecar = fit(pipe, data, cfg, Path(cfg.output_dir), base_name=cfg.base, extra_sidecar=extra, log=keep, progress=progress)
    return TrainResult(Path(cfg.output_dir), sidecar["steps"], sidecar, records)
