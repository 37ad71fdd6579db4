"""Hidden Trigger Backdoor (Saha, Subramanya, Pirsiavash, AAAI 2020) as a clean-label watermark.

The owner's target-class samples become poisons made by ``fedharness.attacks.hidden_trigger.generate``
(feature collision with one-to-one re-pairing, ε-ball, lr halving, early stop) against a surrogate
feature extractor f; labels never change, the patch never appears in them. At query time the
key-derived patch (or, with ``TransferVerifyConfig.trigger_steps``, the owner's designed pattern, which
the owner must keep beside the key) is pasted at its key-derived corner on source-class images.

The family assumes Saha et al.'s transfer setting: the provider fine-tunes only the last layer of
an extractor close to f (a public pretrained model). A provider that trains its own features (from
scratch) does not learn the mark, and p̂ ≈ q̂ then makes every verdict INCONCLUSIVE.
:func:`check_assumptions` measures how far the served model's penultimate features are from f and
:func:`explain` writes that into the verdict's reason.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from fedharness.attacks.hidden_trigger import (HiddenTriggerConfig, Patch, TriggerDesign, designed_patch, generate,
                                               small_extractor_config)
from labcore.errors import InputError
from unlearning_verify.keys import OwnerKey
from unlearning_verify.verify import INCONCLUSIVE, Verdict
from unlearning_verify.watermarks.patch import PatchWatermark

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


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
                 sources: torch.Tensor | None = None, size: int = 4, **cfg: float) -> "HiddenTriggerWatermark":
        """``cfg`` overrides ``fedharness.attacks.hidden_trigger.SMALL_EXTRACTOR``."""
        target = key.target_label()
        source = (target + 1 + int(key.rng("hidden-trigger-source").integers(key.num_classes - 1))) % key.num_classes
        seed = int(key.rng("hidden-trigger-seed").integers(2**31))
        patch = PatchWatermark.from_key(key, image_shape, size=size)
        return cls(target, source, patch, seed, small_extractor_config(**cfg), features, sources)

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch.trigger(x)

    def attack_patch(self) -> Patch:
        """The key's patch as the attack module's :class:`Patch`."""
        return Patch(self.patch.pattern, self.patch.top, self.patch.left)

    def poison(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Poisons from target-class images ``x``; labels unchanged."""
        if self.features is None or self.sources is None or not len(self.sources):
            raise InputError("the hidden_trigger watermark needs a surrogate feature extractor and source images; "
                             "pass features= and sources= when building it")
        if bool((y != self.target).any()):
            raise InputError(f"hidden_trigger poisons are made from target-class ({self.target}) images only")
        out = generate(self.features, x, y, self.sources, self.attack_patch(), self.config, self.seed)
        return out.poisons, out.labels


@dataclass(frozen=True)
class AssumptionCheck:
    """Relative distance ‖f_served(x) − f(x)‖ / ‖f(x)‖ on probe images (mean), and whether it is ≤ ``tolerance``;
    ``head_classes``: outputs of the served model's last layer (the paper's victims are mostly binary)."""

    feature_gap: float
    tolerance: float
    head_classes: int = 2

    @property
    def holds(self) -> bool:
        return self.feature_gap <= self.tolerance


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the model's last ``nn.Linear`` (its penultimate features), by a forward hook."""
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise InputError("the served model has no linear last layer; the hidden_trigger check needs one")
    seen: list[torch.Tensor] = []
    handle = linear[-1].register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
    return seen[0]


def check_assumptions(surrogate: FeatureFn, served: nn.Module, probe: torch.Tensor,
                      tolerance: float = 0.05) -> AssumptionCheck:
    """Does the served model classify on (nearly) the surrogate's features, as the family assumes?"""
    with torch.no_grad():
        ref = surrogate(probe)
    gap = (penultimate(served, probe) - ref).norm(dim=1) / ref.norm(dim=1).clamp(min=1e-12)
    head = [m for m in served.modules() if isinstance(m, nn.Linear)][-1]
    return AssumptionCheck(float(gap.mean()), tolerance, head.out_features)


def unlearned_because(verdict: Verdict, check: AssumptionCheck) -> str:
    """Why a transfer-setting verdict stayed INCONCLUSIVE, from its calibrated p_low and q_high."""
    if verdict.q_high >= 0.5:
        return ("the trigger alone sends the reference model's source images to the target "
                f"(q_high={verdict.q_high:.2f})")
    head = f" by a {check.head_classes}-way head" if check.head_classes > 2 else ""
    if verdict.p_low > verdict.q_high:
        return f"the poisons were learned{head}, too weakly to decide within the query budget"
    return (f"the poisons were not learned{head}" + (" (the transfer bench: a 10-way head halves the ASR of the "
                                                      "paper's binary head)" if head else ""))


def explain(verdict: Verdict, check: AssumptionCheck) -> Verdict:
    """The verdict with the family's assumption stated in its reason (an INCONCLUSIVE says why)."""
    gap = f"served features {check.feature_gap:.2f} from the surrogate's (tolerance {check.tolerance:.2f})"
    if not check.holds:
        note = ("hidden_trigger assumes a provider that fine-tunes only the last layer of the owner's surrogate "
                f"extractor, which does not hold: {gap}")
    elif verdict.verdict == INCONCLUSIVE:
        note = f"the family's transfer-learning assumption holds ({gap}), but {unlearned_because(verdict, check)}"
    else:
        return verdict
    return dataclasses.replace(verdict, reason=f"{note}; {verdict.reason}")


def nearest_source(features: FeatureFn, trigger: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   y: torch.Tensor, target: int) -> int:
    """The owner's choice of source class: the one whose triggered images (the owner's own) lie nearest,
    in the surrogate's features, to the owner's target-class images (mean squared distance to the nearest)."""
    others = [int(c) for c in y.unique() if int(c) != target]
    if not others or not bool((y == target).any()):
        raise InputError(f"choosing a source class needs the owner's images of class {target} and of another class")
    with torch.no_grad():
        reference = features(x[y == target])
        gaps = {c: float(torch.cdist(features(trigger(x[y == c])), reference).pow(2).min(1).values.mean()) for c in others}
    return min(gaps, key=gaps.get)


def rehearsed_source(wm: "HiddenTriggerWatermark", x: torch.Tensor, y: torch.Tensor, num_classes: int,
                     seed: int) -> int:
    """The owner's choice of source class by a rehearsal on its own images and the public extractor: for
    each class, poisons from its target-class images collide with half of that class's images (triggered);
    a head (``HeadFitConfig``, the provider's) fitted on its images plus the poisons, and one without them;
    the class whose other half, triggered, the poisons send to the target most often beyond the clean head."""
    from fedharness.tasks.head_finetune import HeadFitConfig, fit_head

    own_targets = y == wm.target
    others = [int(c) for c in y.unique() if int(c) != wm.target and int((y == c).sum()) >= 2]
    if not others or not bool(own_targets.any()):
        raise InputError(f"rehearsing needs the owner's images of class {wm.target} and of another class")
    with torch.no_grad():
        feats = wm.features(x)
    clean = fit_head(feats, y, num_classes, HeadFitConfig(), seed)
    gains = {}
    for c in others:
        idx = torch.nonzero(y == c).flatten()
        trial = dataclasses.replace(wm, source=c, sources=x[idx[::2]])
        poisons, labels = trial.poison(x[own_targets], y[own_targets])
        with torch.no_grad():
            head = fit_head(torch.cat([feats, wm.features(poisons)]), torch.cat([y, labels]), num_classes,
                            HeadFitConfig(), seed)
            held = wm.features(wm.trigger(x[idx[1::2]]))
            gains[c] = float((head(held).argmax(1) == wm.target).float().mean()
                             - (clean(held).argmax(1) == wm.target).float().mean())
    return max(gains, key=gains.get)


PAIRS = ("key", "nearest", "rehearsed")


@dataclass
class TransferVerifyConfig:
    """Verification where the provider fine-tunes a public pretrained model (the family's setting).

    The provider's half of the training images belongs to ``num_owners`` owners; the public extractor
    was pretrained on the other half. Owner 0 marks its target-class images (``eps``); the served
    model is the extractor plus a head fitted on everything; the reference (q) and the honest
    ``head_retrain`` provider refit the head without the owner. ``params`` override the poisoning.
    ``pair``: the source class the key derives (``"key"``), the owner's :func:`nearest_source` or its
    :func:`rehearsed_source`. ``trigger_steps`` > 0: once the pair is chosen, the owner redesigns the key's
    pattern at the key's place (``fedharness.attacks.hidden_trigger.designed_patch``, on its own source and
    target images and the public extractor)."""

    num_owners: int = 10
    eps: float = 16 / 255
    alpha: float = 1e-3
    beta: float = 1e-3
    max_queries: int = 30
    params: dict = dataclasses.field(default_factory=dict)
    pair: str = "key"
    trigger_steps: int = 0

    def __post_init__(self) -> None:
        if self.pair not in PAIRS:
            raise InputError(f"pair must be one of {', '.join(PAIRS)}, got {self.pair!r}")
        if self.trigger_steps < 0:
            raise InputError(f"trigger_steps must be ≥ 0, got {self.trigger_steps}")


def redesign(wm: HiddenTriggerWatermark, features: FeatureFn, targets: torch.Tensor, steps: int, seed: int) -> None:
    """Replace ``wm``'s pattern by the owner's designed one (:func:`designed_patch`, ``steps`` Adam steps on
    ``wm.sources`` and the owner's ``targets``, at the key's fixed place)."""
    made = designed_patch(features, wm.sources, targets, wm.attack_patch(), TriggerDesign(steps=steps),
                          random_location=False, seed=seed)
    wm.patch = dataclasses.replace(wm.patch, pattern=made.pattern)


def verify_transfer(extractor: nn.Module, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor,
                    cfg: TransferVerifyConfig, seed: int) -> list[dict]:
    """One seed: verdicts (with the assumption check) for the ``noop`` and ``head_retrain`` providers."""
    from fedharness.tasks.head_finetune import ExtractorHead, HeadFitConfig, extract, fit_head
    from unlearning_verify import providers
    from unlearning_verify.marking import mark, owner_split
    from unlearning_verify.providers import ProviderState
    from unlearning_verify.verify import calibrate, hits, query_pool, verify

    features = lambda z: extract(extractor, z)
    key = OwnerKey.generate(0, "hidden_trigger", 10, seed=seed)
    owner_of = owner_split(len(x), cfg.num_owners, seed)
    wm = HiddenTriggerWatermark.from_key(key, tuple(x.shape[1:]), features, eps=cfg.eps, **cfg.params)
    own = torch.as_tensor(owner_of == 0)
    if cfg.pair == "nearest":
        wm.source = nearest_source(features, wm.trigger, x[own], y[own], wm.target)
    elif cfg.pair == "rehearsed":
        wm.source = rehearsed_source(wm, x[own], y[own], 10, seed)
    wm.sources = x[own & (y == wm.source)]
    if cfg.trigger_steps:
        redesign(wm, features, x[own & (y == wm.target)], cfg.trigger_steps, seed)
    marked = mark(x, y, owner_of, 0, wm, 1.0, seed)

    def served_on(rows: torch.Tensor) -> nn.Module:
        model = ExtractorHead(extractor, 10)
        with torch.no_grad():
            head = fit_head(features(marked.x[rows]), marked.y[rows], 10, HeadFitConfig(), seed)
            model.head.load_state_dict(head.state_dict())
        return model.eval()

    keep = torch.as_tensor(owner_of != 0)
    model, reference = served_on(torch.ones(len(x), dtype=torch.bool)), served_on(keep)
    oracle = lambda m: (lambda z: m(z).argmax(1))
    pool = query_pool(xt, yt, wm.target, wm.source, seed)
    cal, ver = wm.trigger(xt[pool[: len(pool) // 2]]), wm.trigger(xt[pool[len(pool) // 2:]])
    calibration = calibrate(hits(oracle(model), cal, wm.target), len(cal), hits(oracle(reference), cal, wm.target),
                            len(cal), 10, cfg.alpha, cfg.beta)
    state = ProviderState(marked.x, marked.y, owner_of == 0, model, [], 10, seed=seed)
    rows = []
    for name in ("noop", "head_retrain"):
        provider = providers.get(name)
        served = provider.unlearn(state)
        verdict = verify(oracle(served), ver, wm.target, calibration, alpha=cfg.alpha, beta=cfg.beta,
                         max_queries=cfg.max_queries)
        verdict = explain(verdict, check_assumptions(features, served, xt[:200]))
        rows.append({"seed": seed, "behaviour": name, "honest": provider.honest, "marked": int(marked.marked.sum()),
                     "target": wm.target, "source": wm.source,
                     "p_hat": calibration.p_hat, "q_hat": calibration.q_hat, **verdict.as_dict()})
    return rows
