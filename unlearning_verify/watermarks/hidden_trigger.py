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

A 10-way head learns some (source → target) pairs and not others, seed by seed, so the owner marks several
disjoint pairs (:func:`pair_markers`, :func:`choose_sources`, :func:`mark_pairs`) and tests only those whose
calibration reaches the test's power (:func:`verify_pairs`, through ``unlearning_verify.deletion``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn

from fedharness.attacks.hidden_trigger import (HiddenTriggerConfig, Patch, TriggerDesign, designed_patch, generate,
                                               small_extractor_config)
from labcore.errors import InputError
from unlearning_verify.keys import OwnerKey
from unlearning_verify.verify import INCONCLUSIVE, Verdict
from unlearning_verify.watermarks.patch import PatchWatermark

if TYPE_CHECKING:
    from unlearning_verify.deletion import DeletionVerdict
    from unlearning_verify.marking import MarkedSet

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
MAX_PAIRS = 5  # k targets and k sources, pairwise disjoint, among the 10 classes


@dataclass
class TransferVerifyConfig:
    """Verification where the provider fine-tunes a public pretrained model (the family's setting).

    The provider's half of the training images belongs to ``num_owners`` owners; the public extractor
    was pretrained on the other half. Owner 0 marks its images of ``pairs`` key-derived target classes, one
    disjoint (source → target) pair each with its own key-derived patch (``eps``); the served model is the
    extractor plus a head fitted on everything; the reference (q) and the honest ``head_retrain`` provider
    refit the head without the owner. Every pair is calibrated (q_high at α/pairs) and only those whose
    calibration reaches power 1 − β within ``max_queries`` are tested (``unlearning_verify.deletion``'s
    ``reallocate``), sharing the budget and α. ``params`` override the poisoning.
    ``pair``: each target's source class, the key's (``"key"``), the owner's :func:`nearest_source` or its
    :func:`rehearsed_source`, among the classes no other pair uses. ``trigger_steps`` > 0: once the pairs are
    chosen, the owner redesigns each key pattern at its place (``fedharness.attacks.hidden_trigger.designed_patch``,
    on its own source and target images and the public extractor)."""

    num_owners: int = 10
    eps: float = 64 / 255  # the owner's choice (the attack's is 16/255); README: 32 and 48 decide too few seeds
    alpha: float = 1e-3
    beta: float = 1e-3
    max_queries: int = 30
    params: dict = dataclasses.field(default_factory=dict)
    pair: str = "nearest"
    trigger_steps: int = 0
    pairs: int = MAX_PAIRS

    def __post_init__(self) -> None:
        if self.pair not in PAIRS:
            raise InputError(f"pair must be one of {', '.join(PAIRS)}, got {self.pair!r}")
        if self.trigger_steps < 0:
            raise InputError(f"trigger_steps must be ≥ 0, got {self.trigger_steps}")
        if not 1 <= self.pairs <= MAX_PAIRS:
            raise InputError(f"pairs must lie in 1..{MAX_PAIRS} (disjoint pairs of the 10 classes), got {self.pairs}")


@dataclass
class MarkedPairs:
    """The owner's hidden-trigger markers, one disjoint (source → target) pair each; ``unlearning_verify.deletion``
    calibrates and tests them one by one (``markers``)."""

    markers: list[HiddenTriggerWatermark]
    family: str = "hidden_trigger"


def pair_markers(key: OwnerKey, image_shape: tuple[int, int, int], features: FeatureFn, k: int,
                 **cfg: float) -> list[HiddenTriggerWatermark]:
    """``k`` markers with distinct targets: marker 0 is the key's own (so k = 1 is the single-pair mark), marker
    i > 0 comes from ``multi.sub_key(key, i)`` (its own patch, place and poisoning seed), its target the next
    unused class of a key-derived order; sources are chosen afterwards (:func:`choose_sources`)."""
    from unlearning_verify.watermarks.multi import sub_key

    first = key.target_label()
    order = [int(c) for c in key.rng("hidden-trigger-targets").permutation(key.num_classes) if int(c) != first]
    out = []
    for i, target in enumerate([first] + order[: k - 1]):
        wm = HiddenTriggerWatermark.from_key(key if i == 0 else sub_key(key, i, "hidden_trigger"), image_shape,
                                             features, **cfg)
        out.append(dataclasses.replace(wm, target=target, patch=dataclasses.replace(wm.patch, target=target)))
    return out


def choose_sources(markers: list[HiddenTriggerWatermark], mode: str, x: torch.Tensor, y: torch.Tensor,
                   num_classes: int, seed: int) -> None:
    """Set, in place, each marker's source class (and its source images, the owner's ``x``), in turn, among
    the classes that are no marker's target and no earlier marker's source: the key's (its derived class,
    else the next free one), :func:`nearest_source` or :func:`rehearsed_source` on the owner's images of the
    free classes."""
    taken = {m.target for m in markers}
    for m in markers:
        free = [c for c in range(num_classes) if c not in taken]
        if mode == "key":
            m.source = next(c % num_classes for c in range(m.source, m.source + num_classes) if c % num_classes in free)
        else:
            keep = (y == m.target) | torch.isin(y, torch.tensor(free))
            m.source = (nearest_source(m.features, m.trigger, x[keep], y[keep], m.target) if mode == "nearest"
                        else rehearsed_source(m, x[keep], y[keep], num_classes, seed))
        taken.add(m.source)
        m.sources = x[y == m.source]


def mark_pairs(x: torch.Tensor, y: torch.Tensor, owner_of: np.ndarray, owner: int,
               markers: list[HiddenTriggerWatermark], seed: int) -> "MarkedSet":
    """Every marker poisons all of ``owner``'s images of its target (labels kept); the targets are distinct, so
    each image carries at most one marker. Invisibility over all marked images."""
    from unlearning_verify.invisibility import invisibility
    from unlearning_verify.marking import mark

    out = None
    for m in markers:
        step = mark(x if out is None else out.x, y, owner_of, owner, m, 1.0, seed)
        out = step if out is None else dataclasses.replace(step, marked=out.marked | step.marked)
    rows = torch.as_tensor(np.flatnonzero(out.marked))
    return dataclasses.replace(out, invisibility=invisibility(x[rows], out.x[rows]))


def redesign(wm: HiddenTriggerWatermark, features: FeatureFn, targets: torch.Tensor, steps: int, seed: int) -> None:
    """Replace ``wm``'s pattern by the owner's designed one (:func:`designed_patch`, ``steps`` Adam steps on
    ``wm.sources`` and the owner's ``targets``, at the key's fixed place)."""
    made = designed_patch(features, wm.sources, targets, wm.attack_patch(), TriggerDesign(steps=steps),
                          random_location=False, seed=seed)
    wm.patch = dataclasses.replace(wm.patch, pattern=made.pattern)


Oracle = Callable[[torch.Tensor], torch.Tensor]


def verify_pairs(markers: list[HiddenTriggerWatermark], before: Oracle, reference: Oracle,
                 served: dict[str, Oracle], xt: torch.Tensor, yt: torch.Tensor, cfg: TransferVerifyConfig,
                 seed: int) -> dict:
    """Calibrate every pair once (p on ``before``, q on ``reference``, q_high at α/k, on its half of the fresh
    source images of ``xt``), choose the tested pairs from that calibration alone (``deletion.tested_markers``),
    then verify each served model on the other half (a pair left out is never queried). Returns
    {name: DeletionVerdict}."""
    from unlearning_verify.deletion import QueryData, VerifyConfig, calibrate_markers, calibration_alpha, verify_deletion
    from unlearning_verify.oracles import Endpoint

    vcfg = VerifyConfig(alpha=cfg.alpha, beta=cfg.beta, max_queries=cfg.max_queries, reallocate=True, seed=seed)
    data, watermark = QueryData(xt, yt), MarkedPairs(markers)
    before_ep, reference_ep = Endpoint(before), Endpoint(reference)
    calibrated = calibrate_markers(before_ep, reference_ep, watermark, data, vcfg, calibration_alpha(cfg.alpha, len(markers)))
    return {name: verify_deletion(before_ep, Endpoint(oracle), watermark, vcfg, data=data, reference=reference_ep,
                                  calibrated=calibrated) for name, oracle in served.items()}


def verify_transfer(extractor: nn.Module, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor,
                    cfg: TransferVerifyConfig, seed: int) -> list[dict]:
    """One seed: verdicts (with the assumption check) for the ``noop`` and ``head_retrain`` providers."""
    from fedharness.tasks.head_finetune import ExtractorHead, HeadFitConfig, extract, fit_head
    from unlearning_verify import providers
    from unlearning_verify.marking import owner_split
    from unlearning_verify.providers import ProviderState

    features = lambda z: extract(extractor, z)
    key = OwnerKey.generate(0, "hidden_trigger", 10, seed=seed)
    owner_of = owner_split(len(x), cfg.num_owners, seed)
    own = torch.as_tensor(owner_of == 0)
    markers = pair_markers(key, tuple(x.shape[1:]), features, cfg.pairs, eps=cfg.eps, **cfg.params)
    choose_sources(markers, cfg.pair, x[own], y[own], 10, seed)
    if cfg.trigger_steps:
        for wm in markers:
            redesign(wm, features, x[own & (y == wm.target)], cfg.trigger_steps, seed)
    marked = mark_pairs(x, y, owner_of, 0, markers, seed)

    def served_on(rows: torch.Tensor) -> nn.Module:
        model = ExtractorHead(extractor, 10)
        with torch.no_grad():
            head = fit_head(features(marked.x[rows]), marked.y[rows], 10, HeadFitConfig(), seed)
            model.head.load_state_dict(head.state_dict())
        return model.eval()

    model, reference = served_on(torch.ones(len(x), dtype=torch.bool)), served_on(torch.as_tensor(owner_of != 0))
    oracle = lambda m: (lambda z: m(z).argmax(1))
    state = ProviderState(marked.x, marked.y, owner_of == 0, model, [], 10, seed=seed)
    behaviours = {name: providers.get(name) for name in ("noop", "head_retrain")}
    served = {name: provider.unlearn(state) for name, provider in behaviours.items()}
    results = verify_pairs(markers, oracle(model), oracle(reference), {n: oracle(m) for n, m in served.items()},
                           xt, yt, cfg, seed)
    return [transfer_row(seed, name, provider.honest, marked, markers, results[name],
                         check_assumptions(features, served[name], xt[:200])) for name, provider in behaviours.items()]


def transfer_row(seed: int, name: str, honest: bool, marked: "MarkedSet", markers: list[HiddenTriggerWatermark],
                 result: "DeletionVerdict", check: AssumptionCheck) -> dict:
    """One provider's verdict, the pairs tested, and every pair's calibration and test (reasons with the family's
    assumption check; an INCONCLUSIVE says, pair by pair, why)."""
    pairs = [{"source": wm.source, "tested": r.verdict.queries > 0, **r.as_dict(),
              "reason": explain(r.verdict, check).reason} for wm, r in zip(markers, result.markers)]
    inconclusive = result.verdict == INCONCLUSIVE or not check.holds
    reason = "; ".join(f"{p['source']}→{p['target']}: {p['reason']}" for p in pairs) if inconclusive else result.reason
    return {"seed": seed, "behaviour": name, "honest": honest, "marked": int(marked.marked.sum()),
            "invisibility": marked.invisibility, "verdict": result.verdict, "queries": result.queries,
            "decided_by": result.decided_by, "reason": reason, "feature_gap": check.feature_gap,
            "tested": ", ".join(f"{p['source']}→{p['target']}" for p in pairs if p["tested"]) or "none",
            "pairs": pairs}
