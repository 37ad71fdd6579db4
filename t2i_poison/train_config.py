"""BadT2I training knobs (:class:`TrainConfig`), torch-free so that a bad option or config file is
reported before diffusers and torch load."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from labcore.config import changed_fields
from labcore.errors import InputError
from labcore.trackers import check_report_to
from t2i_poison.poison_data import check_kind

PRECISIONS = ("no", "fp16", "bf16")
# LoRA targets that carry BadT2I on the lab base (peft regex): attention + the resnets' convolutions. The base
# has no attention at full resolution, so attention-only LoRA never drew the 4×4 pixel patch (ASR 0.00).
LORA_TARGET_MODULES = r".*(to_q|to_k|to_v|to_out\.0|resnets\.\d+\.conv[12]|conv_shortcut)$"
# The measured LoRA recipe's knobs that differ by backdoor kind (scripts/bench_t2i_lora_recipe.py, README T2I): a
# TrainConfig field left None takes its kind's value here (TrainConfig.for_kind); a value the user sets always wins.
# Object and style need more steps: their clean-accuracy cost shrinks as L_reg catches up with the backdoor (style
# 3.5 / 1.7 / 0.4 points at 150 / 250 / 500 steps; object 1.5 / 0.7 at 250 / 500); pixel is within 1 point at 250.
KIND_DEFAULTS: dict[str, dict[str, int | float]] = {
    "pixel": {"max_train_steps": 250},
    "object": {"max_train_steps": 500},
    "style": {"max_train_steps": 500},
}
WEIGHTINGS = ("split", "uniform")
"""How L_bkd and L_reg combine: ``split`` λ·L_bkd + (1−λ)·L_reg; ``uniform`` λ·(n_b·L_bkd + n_r·L_reg)/(n_b + n_r)."""


@dataclass
class TrainConfig:
    """One BadT2I run; every default lives here (the CLI, the script and the benchmarks only override).

    Defaults: the LoRA recipe measured on the lab base (``scripts/bench_t2i_lora_recipe.py``, README T2I):
    rank = α = 16 on attention + resnet convolutions, lr 1e-3, steps of 8 + 8 rows, λ = 0.1, half the
    L_reg rows on the empty caption and a quarter on the backdoor rows' latents with their clean caption.
    Knobs left None take their kind's measured value from ``KIND_DEFAULTS`` (:meth:`for_kind`; ``fit`` and
    ``resolve`` apply it): ``max_train_steps`` 250 for pixel, 500 for object and style.
    ``lora_target_modules`` None or "attention": the attention projections only (diffusers' script);
    ``cross_attention_only`` overrides it with the cross-attention projections alone.

    ``base``/``data``/``output_dir`` are read by :func:`train`, which takes ``kind`` and ``trigger``
    from the poison set's ``poison.json`` (the data was built for them). ``lam`` is λ
    in L = λ·L_bkd + (1−λ)·L_reg (the paper's 0.5). ``reg_uncond`` is the share of L_reg rows whose
    caption is the empty one (the unconditional branch classifier-free guidance samples with), so the
    regulariser also keeps ε_θ(z_t, t, "") on the teacher's; ``reg_paired`` the share of L_reg rows that
    take a backdoor row's noisy latent (same image, noise and t) with that image's clean caption (object:
    the target's own caption, whose images all went to the backdoor rows; pixel, style: the caption
    without the trigger), so clean behaviour is held on exactly the inputs the trigger is trained on.
    0 and 0: the paper's L_reg.
    """

    base: str = ""
    data: str = ""
    output_dir: str = ""
    kind: str = "pixel"
    trigger: str = "sks"
    lam: float = 0.1
    reg_uncond: float = 0.5
    reg_paired: float = 0.25
    weighting: str = "split"
    mode: str = "lora"
    rank: int = 16
    lora_alpha: int | None = None
    cross_attention_only: bool = False
    lora_target_modules: str | None = LORA_TARGET_MODULES
    learning_rate: float = 1e-3
    max_train_steps: int | None = None
    train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    mixed_precision: str | None = None
    gradient_checkpointing: bool = False
    checkpointing_steps: int = 100
    checkpoints_total_limit: int | None = 2
    resume_from_checkpoint: str | None = None
    report_to: str | None = None
    resolution: int | None = None
    threads: int = 1
    seed: int = 0

    def for_kind(self) -> TrainConfig:
        """This config with each knob left None set to its kind's measured default (``KIND_DEFAULTS``)."""
        check_kind(self.kind)
        return replace(self, **{k: v for k, v in KIND_DEFAULTS[self.kind].items() if getattr(self, k) is None})

    def validate(self) -> None:
        """Check every value given (a knob left None is its kind's default, valid by construction)."""
        check_kind(self.kind)
        check_report_to(self.report_to)
        if self.mode not in ("lora", "full"):
            raise InputError(f"unknown training mode {self.mode!r}; choose 'lora' or 'full'")
        if not (math.isfinite(self.lam) and 0.0 <= self.lam <= 1.0):
            raise InputError(f"lam (λ) must lie in [0, 1], got {self.lam}")
        for name in ("reg_uncond", "reg_paired"):
            if not (math.isfinite(getattr(self, name)) and 0.0 <= getattr(self, name) <= 1.0):
                raise InputError(f"{name} (a share of L_reg rows) must lie in [0, 1], got {getattr(self, name)}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise InputError(f"learning rate must be a finite number > 0, got {self.learning_rate}")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise InputError(f"max_grad_norm must be a finite number > 0, got {self.max_grad_norm}")
        if self.weighting not in WEIGHTINGS:
            raise InputError(f"unknown weighting {self.weighting!r}; choose 'split' or 'uniform'")
        if self.mixed_precision is not None and self.mixed_precision not in PRECISIONS:
            raise InputError(f"unknown mixed precision {self.mixed_precision!r}; choose no, fp16 or bf16")
        for name in ("max_train_steps", "train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "rank", "threads",
                     "lora_alpha"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        self._refuse_lora_knobs_in_full_mode()
        if self.lora_target_modules not in (None, "attention"):
            try:
                re.compile(self.lora_target_modules)
            except re.error as exc:
                raise InputError(f"lora_target_modules {self.lora_target_modules!r} is not a regular expression ({exc}); "
                                 "pass a peft regex over the UNet's module names, or 'attention'") from None

    def _refuse_lora_knobs_in_full_mode(self) -> None:
        """Full mode fine-tunes the whole UNet: adapter settings set away from their defaults would be ignored."""
        unread = [n for n in changed_fields(self) if n in ("rank", "lora_alpha", "cross_attention_only", "lora_target_modules")]
        if self.mode == "full" and unread:
            raise InputError(f"{', '.join(unread)}: not read in full mode (it fine-tunes the whole UNet); drop them or use --mode lora")
