"""Hidden Trigger Backdoor (Saha, Subramanya, Pirsiavash, AAAI 2020) as a clean-label watermark.

Poisons look like target-class images but sit next to patched source images in feature space:
min_z ‖f(z) − f(s̃)‖² s.t. ‖z − t‖_∞ ≤ ε, z ∈ [0, 1] (ε = 16/255). Each iteration re-pairs poisons
and patched sources one-to-one by feature distance (the paper's greedy matching; here an optimal
assignment); a max-normalised gradient step, clip to ±ε, clamp. The patch is pasted at random key-derived places
while optimising, and at a fixed key-derived place at query time; queries are source-class images.
f is the owner's surrogate feature extractor (e.g. a SmallCNN's ``features`` output). Labels are
never changed, so the marked samples show no trigger and no flipped label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from scipy.optimize import linear_sum_assignment

from labcore.errors import InputError
from unlearning_verify.keys import OwnerKey
from unlearning_verify.watermarks.patch import PatchWatermark

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class HiddenTriggerConfig:
    eps: float = 16 / 255
    lr: float = 0.01
    iterations: int = 300
    halve_every: int = 1000


@dataclass
class HiddenTriggerWatermark:
    target: int
    source: int
    patch: PatchWatermark
    seed: int
    config: HiddenTriggerConfig
    features: FeatureFn | None = None
    sources: torch.Tensor | None = None
    family: str = "hidden_trigger"
    clean_label: bool = True

    @classmethod
    def from_key(cls, key: OwnerKey, image_shape: tuple[int, int, int], features: FeatureFn | None = None,
                 sources: torch.Tensor | None = None, **cfg: float) -> "HiddenTriggerWatermark":
        target = key.target_label()
        source = (target + 1 + int(key.rng("hidden-trigger-source").integers(key.num_classes - 1))) % key.num_classes
        seed = int(key.rng("hidden-trigger-seed").integers(2**31))
        return cls(target, source, PatchWatermark.from_key(key, image_shape), seed, HiddenTriggerConfig(**cfg),
                   features, sources)

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch.trigger(x)

    def _random_patch(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        s = self.patch.pattern.shape[-1]
        _, _, h, w = x.shape
        out = x.clone()
        tops = torch.randint(0, h - s + 1, (len(x),), generator=g)
        lefts = torch.randint(0, w - s + 1, (len(x),), generator=g)
        for i, (t, l) in enumerate(zip(tops.tolist(), lefts.tolist())):
            out[i, :, t:t + s, l:l + s] = self.patch.pattern
        return out

    def poison(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Poisons from target-class images ``x``; labels unchanged."""
        if self.features is None or self.sources is None or not len(self.sources):
            raise InputError("the hidden_trigger watermark needs a surrogate feature extractor and source images; "
                             "pass features= and sources= when building it")
        if bool((y != self.target).any()):
            raise InputError(f"hidden_trigger poisons are made from target-class ({self.target}) images only")
        g = torch.Generator().manual_seed(self.seed)
        cfg = self.config
        with torch.no_grad():
            src_feat = self.features(self._random_patch(self.sources, g))
        delta = torch.zeros_like(x, requires_grad=True)
        lr = cfg.lr
        for it in range(cfg.iterations):
            if it and it % cfg.halve_every == 0:
                lr /= 2
            feats = self.features((x + delta).clamp(0, 1))
            dist = torch.cdist(feats.detach(), src_feat)
            rows, cols = linear_sum_assignment(dist.numpy())
            loss = ((feats[rows] - src_feat[cols]) ** 2).sum()
            grad, = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta -= lr * grad / grad.abs().amax().clamp(min=1e-12)
                delta.clamp_(-cfg.eps, cfg.eps)
                delta.copy_((x + delta).clamp(0, 1) - x)
        return (x + delta).detach(), y.clone()
