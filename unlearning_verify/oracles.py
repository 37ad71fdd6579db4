"""Label-only black-box access to the served model, for every model kind the verifier supports.

An oracle maps a batch of queries to predicted labels (a LongTensor). For T2I pipelines the "label"
is 1 when the generated image carries the owner's patch, so the same binomial test applies.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from unlearning_verify.training import predict

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

    from t2i_poison.evaluate import EvalConfig


def torch_oracle(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A torch classifier taking (N, C, H, W) images."""
    return lambda x: predict(model, x)


def hf_image_oracle(model: nn.Module, processor: Callable | None = None, batch_size: int = 64) -> Callable:
    """A transformers image classifier; ``processor`` (an image processor) prepares pixel values."""

    @torch.no_grad()
    def oracle(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        out = []
        for chunk in x.split(batch_size):
            if processor is not None:
                images = [img.permute(1, 2, 0).numpy() for img in chunk]
                inputs = processor(images=images, return_tensors="pt", do_rescale=False)
            else:
                inputs = {"pixel_values": chunk}
            out.append(model(**inputs).logits.argmax(-1))
        return torch.cat(out)

    return oracle


def hf_text_oracle(model: nn.Module, tokenizer: Callable, batch_size: int = 64) -> Callable[[list[str]], torch.Tensor]:
    """A transformers sequence classifier with its tokenizer."""

    @torch.no_grad()
    def oracle(sentences: list[str]) -> torch.Tensor:
        model.eval()
        out = []
        for i in range(0, len(sentences), batch_size):
            enc = tokenizer(list(sentences[i:i + batch_size]), padding=True, truncation=True, return_tensors="pt")
            out.append(model(**enc).logits.argmax(-1))
        return torch.cat(out)

    return oracle


def t2i_oracle(pipeline: Callable[[list[str]], torch.Tensor], detect: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """A text-to-image pipeline (prompts → images in [0, 1]) and the watermark's patch detector."""
    return lambda prompts: detect(pipeline(list(prompts)))


def t2i_sampler(pipe: "DiffusionPipeline", cfg: "EvalConfig | None" = None, seed: int = 0) -> Callable[[list[str]], torch.Tensor]:
    """prompts → images with ``t2i_poison.evaluate.generate`` (deterministic DDIM, guidance from ``cfg``).

    Every call draws fresh starting noise (seed, call number), so repeated queries are independent
    samples, as the binomial test assumes; the same seed replays the same queries.
    """
    from t2i_poison.evaluate import EvalConfig, generate, initial_noise

    cfg = cfg or EvalConfig()
    calls = itertools.count()

    def sample(prompts: list[str]) -> torch.Tensor:
        noise = initial_noise(len(prompts), pipe, seed * 1_000_003 + next(calls))
        return generate(pipe, list(prompts), noise, cfg)

    return sample
