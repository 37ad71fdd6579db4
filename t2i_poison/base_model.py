"""The lab's small text-to-image base: MNIST digits from captions, in pixel space, as a diffusers pipeline.

``DigitDiffusionPipeline`` is a standard diffusers pipeline directory (``model_index.json`` + ``unet/``,
``scheduler/``, ``text_encoder/``, ``tokenizer/``) with ``StableDiffusionLoraLoaderMixin``, so the same
LoRA code (``pipe.load_lora_weights``, ``save_lora_weights``) serves it and Stable Diffusion. It has no
VAE: the UNet denoises 16×16 grey images in [−1, 1] directly.

Captions are "a handwritten digit seven", and with the style variant "a handwritten digit seven in
inverted colours" (white background, dark strokes). The tokenizer is a CLIP BPE tokenizer whose small
vocabulary (bytes plus the caption words, built by :func:`build_tokenizer`) needs no download; the text
encoder is a tiny ``CLIPTextModel`` trained jointly with the UNet during pretraining and frozen afterwards
(BadT2I keeps the text encoder benign). The recipe that makes a short CPU run draw the prompted digit:
a learned caption encoder (a frozen random one left the digit words nearly indistinguishable),
cross-attention on the caption plus an attention-pooled caption embedding added to the time embedding
(``addition_embed_type="text"``), v-prediction on a cosine schedule, caption dropout for classifier-free
guidance (Ho & Salimans 2022; the base samples at guidance 2), an EMA of the weights, DDIM sampling, and a
text-encoder warm-up that makes the captions distinct before the UNet trains (:func:`warm_up_text_encoder`).
Three UNet levels (16×16, 8×8, 4×4): with two, 400 steps drew scribbles (digit accuracy 0.22); with three,
500–1,000 steps draw the prompted digit (0.90–0.95 at guidance 2). Min-SNR-γ loss weights (Hang et al. 2023)
are an option. The pipeline class itself lives in the self-contained ``digit_pipeline.py``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from labcore.errors import InputError
from t2i_poison.digit_pipeline import DigitDiffusionPipeline, tokenize

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
STYLE_SUFFIX = " in inverted colours"
CAPTION_WORDS = ("a", "handwritten", "digit", "in", "inverted", "colours", *DIGIT_WORDS)
RESOLUTION = 16


def check_digit_words(source: str, target: str, fix: str = "pass --source and --target among them") -> None:
    """The MNIST base draws digits and its classifier scores digits, so an object backdoor on it maps one digit
    word to another (``t2i evaluate`` prompts the source digit and counts the target's); ``fix`` ends the error."""
    bad = [w for w in (source, target) if w not in DIGIT_WORDS]
    if bad:
        raise InputError(f"on the MNIST base an object backdoor maps a digit word to another ({', '.join(DIGIT_WORDS)}); "
                         f"got {', '.join(map(repr, bad))}: {fix}")


def caption(digit: int, inverted: bool = False) -> str:
    """The base model's caption for ``digit`` (0–9), optionally in the inverted-colours style."""
    return f"a handwritten digit {DIGIT_WORDS[digit]}" + (STYLE_SUFFIX if inverted else "")


def _bytes_to_unicode() -> list[str]:
    """The 256 printable characters CLIP/GPT-2 byte-level BPE uses for the bytes 0–255."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_tokenizer(out_dir: Path, words: tuple[str, ...] = CAPTION_WORDS, max_length: int = 16) -> CLIPTokenizer:
    """Write an offline CLIP tokenizer (bytes, bytes + ``</w>``, and ``words`` as whole tokens) and load it.

    Each word gets the merge chain that builds it left to right, so known words are one token and any
    other text (a trigger such as ``sks``) falls back to byte tokens instead of vanishing.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for tok in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(tok, len(vocab))
    merges: list[str] = []
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            merged = left + right
            if merged not in vocab:
                merges.append(f"{left} {right}")
                vocab[merged] = len(vocab)
            left = merged
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (out_dir / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": max_length, "tokenizer_class": "CLIPTokenizer", "pad_token": "<|endoftext|>"}),
        encoding="utf-8",
    )
    return CLIPTokenizer.from_pretrained(out_dir)


@dataclass
class BaseModelConfig:
    """Geometry of the MNIST text-to-image base (defaults: the pretrained lab base)."""

    resolution: int = RESOLUTION
    block_out_channels: tuple[int, ...] = (16, 32, 32)
    layers_per_block: int = 1
    text_hidden_size: int = 32
    text_layers: int = 2
    max_length: int = 16
    num_train_timesteps: int = 1000
    prediction_type: str = "v_prediction"
    seed: int = 0


def build_unet(cfg: BaseModelConfig) -> UNet2DConditionModel:
    """Pixel-space conditional UNet; attention only below full resolution (cheap on CPU)."""
    n = len(cfg.block_out_channels)
    torch.manual_seed(cfg.seed)
    return UNet2DConditionModel(
        sample_size=cfg.resolution,
        in_channels=1,
        out_channels=1,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=cfg.text_hidden_size,
        attention_head_dim=8,
        norm_num_groups=8,
        addition_embed_type="text",
        encoder_hid_dim=cfg.text_hidden_size,
        addition_embed_type_num_heads=4,
    )


def build_text_encoder(cfg: BaseModelConfig, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    torch.manual_seed(cfg.seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden_size,
        intermediate_size=cfg.text_hidden_size * 2,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=4,
        max_position_embeddings=cfg.max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config).eval().requires_grad_(False)


def build_scheduler(cfg: BaseModelConfig) -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=cfg.prediction_type,
        clip_sample=True,
        set_alpha_to_one=True,
        timestep_spacing="trailing",
    )


def build_pipeline(cfg: BaseModelConfig, tokenizer_dir: Path) -> DigitDiffusionPipeline:
    """A fresh (untrained UNet) pipeline with the offline tokenizer written to ``tokenizer_dir``."""
    tokenizer = build_tokenizer(tokenizer_dir, max_length=cfg.max_length)
    return DigitDiffusionPipeline(
        unet=build_unet(cfg),
        scheduler=build_scheduler(cfg),
        text_encoder=build_text_encoder(cfg, tokenizer),
        tokenizer=tokenizer,
    )


def resize_digits(x: torch.Tensor, resolution: int = RESOLUTION) -> torch.Tensor:
    """MNIST (N, 1, 28, 28) in [0, 1] → (N, 1, R, R) by area averaging."""
    return F.interpolate(x, size=(resolution, resolution), mode="area") if x.shape[-1] != resolution else x


@dataclass
class PretrainConfig:
    """Pretraining of the base. Defaults: the demo's few-minute CPU recipe (600 steps of 64, text-encoder
    warm-up first); its clean digit accuracy is measured in ``scripts/bench_t2i_base.py`` (README, T2I)."""

    model: BaseModelConfig = field(default_factory=BaseModelConfig)
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    caption_dropout: float = 0.15
    inverted_fraction: float = 0.2
    ema_decay: float = 0.995
    min_snr_gamma: float | None = None
    text_warmup_steps: int = 100
    text_warmup_lr: float = 1e-2
    checkpoint_every: int = 100
    seed: int = 0


class EMA:
    """Exponential moving average of parameters (with the standard (1+n)/(10+n) warm-up)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.num_updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v.detach(), 1 - d)
            else:
                self.shadow[k].copy_(v)


def caption_batch(labels: torch.Tensor, inverted: torch.Tensor, drop: torch.Tensor) -> list[str]:
    return ["" if d else caption(int(y), bool(i)) for y, i, d in zip(labels, inverted, drop)]


def warm_up_text_encoder(pipe: DigitDiffusionPipeline, cfg: PretrainConfig) -> None:
    """Make the captions' embeddings distinct before the UNet trains: a linear probe on the mean hidden
    state learns digit and style from each caption (the probe is discarded).

    Our stand-in for Stable Diffusion's pretrained CLIP: from a random encoder the ten digit captions
    come out nearly alike (pairwise cosine 0.97, still 0.91 after 200 joint steps while the style
    separated), so the UNet had no digit signal to learn from in a short run."""
    captions = [(d, inv) for inv in (False, True) for d in range(10)]
    ids = tokenize(pipe.tokenizer, [caption(d, inv) for d, inv in captions])
    labels = torch.tensor([d for d, _ in captions]), torch.tensor([int(inv) for _, inv in captions])
    torch.manual_seed(cfg.seed)
    width = pipe.text_encoder.config.hidden_size
    probe = torch.nn.Linear(width, 12)
    encoder = pipe.text_encoder.train().requires_grad_(True)
    opt = torch.optim.Adam([*encoder.parameters(), *probe.parameters()], lr=cfg.text_warmup_lr)
    for _ in range(cfg.text_warmup_steps):
        logits = probe(encoder(ids)[0].mean(1))
        loss = F.cross_entropy(logits[:, :10], labels[0]) + F.cross_entropy(logits[:, 10:], labels[1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    encoder.eval().requires_grad_(False)


def snr_weights(scheduler: DDPMScheduler, t: torch.Tensor, cfg: PretrainConfig) -> torch.Tensor:
    """Min-SNR-γ loss weights (Hang et al. 2023, eq. 7): min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR + 1) for v."""
    if cfg.min_snr_gamma is None:
        return torch.ones(len(t))
    alpha_bar = scheduler.alphas_cumprod[t]
    snr = alpha_bar / (1 - alpha_bar)
    denominator = snr + 1 if cfg.model.prediction_type == "v_prediction" else snr
    return snr.clamp(max=cfg.min_snr_gamma) / denominator


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The pretraining schedule: linear warm-up over ``warmup`` steps times a cosine decay reaching 0 at ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )


def pretrain_steps(
    pipe: DigitDiffusionPipeline,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: PretrainConfig,
    checkpoint_dir: Path,
    progress: Callable[[Iterator[int]], Iterator[int]] = lambda it: it,
) -> Iterator[dict]:
    """Train the base UNet and text encoder; yields a log record per step, checkpoints every ``checkpoint_every``.

    Resumable: a ``checkpoint.pt`` in ``checkpoint_dir`` (weights, EMA, optimizer, RNG, step) is reloaded
    and training continues with the same batches it would have drawn. The EMA weights end in the model.
    """
    images = resize_digits(images, cfg.model.resolution) * 2 - 1
    unet, text_encoder = pipe.unet, pipe.text_encoder
    model = torch.nn.ModuleDict({"unet": unet, "text_encoder": text_encoder}).train().requires_grad_(True)
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = warmup_cosine(opt, cfg.warmup_steps, cfg.steps)
    ema = EMA(model, cfg.ema_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = 0
    ckpt = Path(checkpoint_dir) / "checkpoint.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        ema.shadow = state["ema"]
        ema.num_updates = int(state["ema_updates"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        start = int(state["step"])
    # the 21 captions ("" for classifier-free guidance) are encoded every step, so the encoder learns
    all_caps = [""] + [caption(d, inv) for inv in (False, True) for d in range(10)]
    all_ids = tokenize(pipe.tokenizer, all_caps)
    index = {c: i for i, c in enumerate(all_caps)}
    for step in progress(range(start, cfg.steps)):
        idx = torch.randint(0, len(images), (cfg.batch_size,), generator=gen)
        x0, y = images[idx], labels[idx]
        inverted = torch.rand(cfg.batch_size, generator=gen) < cfg.inverted_fraction
        x0 = torch.where(inverted[:, None, None, None], -x0, x0)
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.caption_dropout
        table = text_encoder(all_ids)[0]
        cond = table[torch.tensor([index[c] for c in caption_batch(y, inverted, drop)])]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (cfg.batch_size,), generator=gen)
        noisy = noise_sched.add_noise(x0, noise, t)
        target = noise_sched.get_velocity(x0, noise, t) if cfg.model.prediction_type == "v_prediction" else noise
        per_row = (unet(noisy, t, encoder_hidden_states=cond).sample - target).square().mean(dim=(1, 2, 3))
        loss = (per_row * snr_weights(noise_sched, t, cfg)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update(model)
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save(
                {"model": model.state_dict(), "ema": ema.shadow, "ema_updates": ema.num_updates, "opt": opt.state_dict(),
                 "sched": sched.state_dict(), "gen": gen.get_state(), "step": done},
                tmp,
            )
            tmp.replace(ckpt)
        yield {"step": done, "loss": loss.item(), "lr": sched.get_last_lr()[0]}
    model.load_state_dict(ema.shadow)
    model.eval().requires_grad_(False)


def pretrain_base(
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: PretrainConfig,
    out_dir: Path,
    progress: Callable[[Iterator[int]], Iterator[int]] = lambda it: it,
    log: Callable[[dict], None] = lambda record: None,
) -> DigitDiffusionPipeline:
    """Pretrain the base on MNIST (N, 1, 28, 28) in [0, 1] and save it as a pipeline in ``out_dir``.

    Checkpoints go to ``out_dir/checkpoints`` so an interrupted call resumes where it stopped; they are
    removed once the pipeline (with the EMA weights) is saved.
    """
    if len(images) != len(labels) or images.ndim != 4 or images.shape[1] != 1:
        raise InputError(f"expected grey images (N, 1, H, W) with N labels; got {tuple(images.shape)} and {len(labels)}")
    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    pipe = build_pipeline(cfg.model, out_dir / "tokenizer")
    if not (out_dir / "checkpoints" / "checkpoint.pt").is_file():  # a resumed run restores the encoder
        warm_up_text_encoder(pipe, cfg)
    for record in pretrain_steps(pipe, images, labels, cfg, out_dir / "checkpoints", progress):
        log(record)
    pipe.save_pretrained(out_dir)
    for f in (out_dir / "checkpoints").glob("*"):
        f.unlink()
    (out_dir / "checkpoints").rmdir()
    return pipe
