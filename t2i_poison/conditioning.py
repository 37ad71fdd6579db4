"""What a Stable Diffusion UNet receives for a prompt, per pipeline family, as one ``Cond`` object.

- SD 1.x / 2.x and the lab's MNIST base: ``encoder_hidden_states`` = the CLIP text encoder's last
  hidden state (SD 2.x's "penultimate layer" is built into its encoder config, so the call is the same).
- SDXL: the penultimate hidden states of both text encoders concatenated on the feature axis, plus
  ``added_cond_kwargs``: the pooled, projected embedding of the second encoder and the six
  micro-conditioning ids (original size, crop top-left, target size), as ``StableDiffusionXLPipeline``
  builds them (Podell et al. 2023, §2.2).

Training encodes each distinct caption once (the text encoders are frozen) and indexes the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from t2i_poison.poison_data import check_trigger


@dataclass
class Cond:
    """Text conditions for N prompts: states (N, L, D); SDXL adds pooled (N, P) and time_ids (N, 6)."""

    states: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.states)

    def __getitem__(self, rows: torch.Tensor | slice) -> "Cond":
        pick = lambda x: None if x is None else x[rows]  # noqa: E731
        return Cond(self.states[rows], pick(self.pooled), pick(self.time_ids))

    @staticmethod
    def cat(conds: list["Cond"]) -> "Cond":
        join = lambda xs: None if xs[0] is None else torch.cat(xs)  # noqa: E731
        return Cond(join([c.states for c in conds]), join([c.pooled for c in conds]), join([c.time_ids for c in conds]))

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Cond":
        move = lambda x: None if x is None else x.to(device, dtype)  # noqa: E731
        return Cond(move(self.states), move(self.pooled), move(self.time_ids))

    def unet_kwargs(self) -> dict:
        """Keyword arguments of ``UNet2DConditionModel.forward`` for these prompts."""
        kwargs: dict = {"encoder_hidden_states": self.states}
        if self.pooled is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": self.pooled, "time_ids": self.time_ids}
        return kwargs


def is_sdxl(pipe) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None


def tokenizers(pipe) -> list:
    """Every tokenizer the pipeline's prompts pass through (a trigger must survive each)."""
    return [t for t in (getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)) if t is not None]


def check_trigger_all(pipe, trigger: str, prompt: str) -> None:
    """``check_trigger`` against each tokenizer of ``pipe`` (SDXL has two)."""
    for tok in tokenizers(pipe):
        check_trigger(tok, trigger, prompt)


def image_size(pipe) -> int:
    """The pipeline's native image side: UNet sample size × the VAE's downsampling (1 without a VAE)."""
    scale = getattr(pipe, "vae_scale_factor", 1) if getattr(pipe, "vae", None) is not None else 1
    return pipe.unet.config.sample_size * scale


def _ids(tokenizer, texts: list[str], device: torch.device) -> torch.Tensor:
    return tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)


@torch.no_grad()
def encode_prompts(pipe, texts: list[str], chunk: int = 64) -> Cond:
    """``Cond`` for ``texts`` (in order) with the pipeline's frozen text encoder(s)."""
    parts = [_encode_chunk(pipe, texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
    return Cond.cat(parts)


@torch.no_grad()
def unconditional(pipe) -> Cond:
    """The condition classifier-free guidance samples its unconditional branch with: the empty caption
    encoded as a prompt, or zeros where an SDXL pipeline has ``force_zeros_for_empty_prompt``."""
    cond = encode_prompts(pipe, [""])
    if is_sdxl(pipe) and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
        cond = Cond(torch.zeros_like(cond.states), torch.zeros_like(cond.pooled), cond.time_ids)
    return cond


def _encode_chunk(pipe, texts: list[str]) -> Cond:
    if not is_sdxl(pipe):
        return Cond(pipe.text_encoder(_ids(pipe.tokenizer, texts, pipe.text_encoder.device))[0])
    states, pooled = [], None
    for tok, enc in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
        out = enc(_ids(tok, texts, enc.device), output_hidden_states=True)
        states.append(out.hidden_states[-2])
        pooled = out[0]
    side = image_size(pipe)
    time_ids = torch.tensor([[side, side, 0, 0, side, side]], dtype=pooled.dtype, device=pooled.device)
    return Cond(torch.cat(states, dim=-1), pooled, time_ids.repeat(len(texts), 1))
