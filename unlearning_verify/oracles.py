"""Black-box access to the served model, for every model kind the verifier supports.

An oracle maps a batch of queries to predicted labels (a LongTensor). For T2I pipelines the "label"
is 1 when the generated image carries the owner's patch, so the same binomial test applies. An
:class:`Endpoint` adds class probabilities where the provider returns them (the membership check
needs losses) and counts the queries spent.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from labcore.errors import InputError
from unlearning_verify.training import predict, probabilities

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

    from t2i_poison.evaluate import EvalConfig


def torch_oracle(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A torch classifier taking (N, C, H, W) images."""
    return lambda x: predict(model, x)


@dataclass
class Endpoint:
    """Labels (always) and class probabilities (when served) for batches of images; counts queries."""

    labels_fn: Callable[[torch.Tensor], torch.Tensor]
    probabilities_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    used: int = 0

    def labels(self, x: torch.Tensor) -> torch.Tensor:
        self.used += len(x)
        return self.labels_fn(x)

    @property
    def has_probabilities(self) -> bool:
        return self.probabilities_fn is not None

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy −log p(y|x) of every image (needs probabilities)."""
        if self.probabilities_fn is None:
            raise InputError("the endpoint returns labels only; the membership check needs probabilities")
        self.used += len(x)
        probs = self.probabilities_fn(x)
        return -probs.gather(1, y.view(-1, 1)).squeeze(1).clamp_min(1e-12).log()


def model_endpoint(model: nn.Module) -> Endpoint:
    """A local torch classifier as an endpoint (softmax of its outputs as probabilities)."""
    return Endpoint(lambda x: predict(model, x), lambda x: probabilities(model, x))


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
