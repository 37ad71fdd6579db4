"""Benchmark: provider behaviours × watermark families × seeds on an image classification set.

Per seed: an IID split into owners; owner ``owner`` marks a fraction ``rate`` of its samples. Models
that never depend on the watermark (the clean model for the accuracy cost, trained for the first
``marking_cost_seeds`` seeds (default: all); the reference model for q and for calibrated membership
inference, the honest retrain and SISA) are trained once per seed. Per (family, seed) the provider
trains the marked model once, p and q are calibrated once on held-out triggered test images (the
calibration does not depend on the served model), then every behaviour answers the deletion request
from that same model and the owner verifies with fresh queries; the membership check uses all of
the owner's samples in their original form. BASR and clean accuracy after deletion are measured on
the first ``eval_samples`` test images (reported metrics only; verdicts use the full pools).
One result row per (family, behaviour, seed); rows already in ``done`` are skipped (resume).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from labcore.errors import InputError
from unlearning_verify import providers, training
from unlearning_verify.keys import OwnerKey
from unlearning_verify.marking import mark, min_share, owner_split
from unlearning_verify.deletion import (
    CalibratedMarker, QueryData, VerifyConfig, backdoor_alpha, calibrate_markers, calibration_alpha, markers_of,
    verify_deletion)
from unlearning_verify.membership import matched_non_members, membership_test
from unlearning_verify.oracles import Endpoint, model_endpoint, torch_oracle
from unlearning_verify.providers import ProviderState
from unlearning_verify.providers.forgery import Forgery
from unlearning_verify.providers.stale import Stale
from unlearning_verify.verify import HONORED, NOT_HONORED, check_settings, hits
from unlearning_verify.watermarks import IMAGE_FAMILIES, build

FAMILY_INDEPENDENT = ("retrain", "sisa")
CACHED_BEHAVIOURS = ("partial", "finetune", "gradient_ascent")


@dataclass
class BenchConfig:
    families: list[str] = field(default_factory=lambda: ["multi"])
    behaviours: list[str] = field(default_factory=providers.names)
    seeds: list[int] = field(default_factory=lambda: list(range(20)))
    num_owners: int = 10
    owner: int = 0
    rate: float = 0.5
    alpha: float = VerifyConfig.alpha
    beta: float = VerifyConfig.beta
    max_queries: int = VerifyConfig.max_queries
    membership_share: float = VerifyConfig.membership_share
    membership_samples: int = 1000  # all of a simulated owner's samples (the CLI's endpoint budget caps VerifyConfig's)
    reallocate: bool = VerifyConfig.reallocate
    marking_cost_seeds: int = 20
    eval_samples: int = 2000
    train: training.TrainConfig = field(default_factory=training.TrainConfig)
    provider_params: dict[str, dict] = field(default_factory=dict)
    family_params: dict[str, dict] = field(default_factory=dict)
    train_samples: int | None = None  # a fixed random subset of the training set (small benches)

    def validate(self) -> None:
        """Refuse settings the benchmark cannot run, before any model is trained."""
        check_settings(self.alpha, self.beta, self.max_queries)
        checks = [
            (bool(self.seeds), "--seeds must be ≥ 1"),
            (0 <= self.owner < self.num_owners,
             f"--owner must lie in 0..owners−1 with --owners ≥ 2, got owner {self.owner} of {self.num_owners}"),
            (self.num_owners >= 2, f"--owners must be ≥ 2 (the reference model trains on the other owners), got {self.num_owners}"),
            (0.0 < self.rate <= 1.0, f"--rate must lie in (0, 1], got {self.rate}"),
            (self.train.epochs >= 1, f"--epochs must be ≥ 1, got {self.train.epochs}"),
            (self.train.batch_size >= 1 and math.isfinite(self.train.lr) and self.train.lr > 0,
             f"train.batch_size must be ≥ 1 and train.lr a finite number > 0, got {self.train.batch_size} and {self.train.lr}"),
            (self.train_samples is None or self.train_samples >= 1, f"--train-samples must be ≥ 1, got {self.train_samples}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        distinct("--families", self.families, IMAGE_FAMILIES)
        distinct("--behaviours", self.behaviours, providers.names())
        for provider in self.built_providers():
            if isinstance(provider, Stale):
                provider.check_checkpoints(self.train.epochs)  # one checkpoint per epoch

    def check_data(self, num_samples: int) -> None:
        """Refuse a training set (of ``num_samples``, cut to ``train_samples``) too small for the owners."""
        n, need = min(num_samples, self.train_samples or num_samples), self.num_owners * min_share(self.rate)
        if n < need:
            fix = f"use --train-samples ≥ {need}" if need <= num_samples else f"use --owners ≤ {n // min_share(self.rate)}"
            raise InputError(f"{n} training samples are too few for {self.num_owners} owners to each mark a sample at "
                             f"rate {self.rate:g} (≥ {min_share(self.rate)} samples each); {fix}")
        for provider in self.built_providers():
            if isinstance(provider, Forgery):
                provider.check_retained(n - -(-n // self.num_owners))  # the owner's share is at most ⌈n/owners⌉

    def built_providers(self) -> list[providers.Provider]:
        """The behaviours built with their ``provider_params`` (input errors for bad ones)."""
        return [providers.get(b, **self.provider_params.get(b, {})) for b in self.behaviours]


def distinct(option: str, values: list[str], known: Iterable[str]) -> None:
    """Refuse an empty list, a repeated name or an unknown one (``known`` lists the choices)."""
    known = list(known)
    unknown = [v for v in values if v not in known]
    if not values or unknown or len(set(values)) < len(values):
        problem = f"unknown {unknown[0]!r}" if unknown else ("empty" if not values else "a name given twice")
        raise InputError(f"{option}: {problem}; give a comma list of distinct names from: {', '.join(known)}")


def subset(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` rows of a fixed permutation (seed 0) of the training set; all of it for None."""
    if n is None or n >= len(x):
        return x, y
    idx = torch.as_tensor(np.sort(np.random.default_rng(0).permutation(len(x))[:n]))
    return x[idx], y[idx]


Trained = tuple[nn.Module, list[dict[str, torch.Tensor]]]


@dataclass
class ModelCache:
    """Trained SmallCNNs (final weights + per-epoch checkpoints) as safetensors files, so that a
    resumed benchmark reuses them; ``folder=None`` keeps nothing."""

    folder: Path | None = None

    def get(self, name: str, build: Callable[[], Trained], template: Callable[[], nn.Module]) -> Trained:
        path = self.folder / f"{name}.safetensors" if self.folder else None
        if path is not None and path.exists():
            tensors = load_file(path)
            def part(prefix: str) -> dict[str, torch.Tensor]:
                return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            model = template()
            model.load_state_dict(part("final/"))
            count = len({k.split("/")[0] for k in tensors if k.startswith("epoch")})
            return model.eval(), [part(f"epoch{i}/") for i in range(count)]
        model, checkpoints = build()
        if path is not None and isinstance(model, training.SmallCNN):
            path.parent.mkdir(parents=True, exist_ok=True)
            flat = {f"final/{k}": v.contiguous() for k, v in model.state_dict().items()}
            for i, c in enumerate(checkpoints):
                flat.update({f"epoch{i}/{k}": v.contiguous() for k, v in c.items()})
            tmp = path.with_name(path.name + ".tmp")
            save_file(flat, str(tmp))
            tmp.replace(path)
        return model, checkpoints


def _features(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: model.features(model.body(x))


@dataclass
class SeedModels:
    """Watermark-independent models of one seed."""

    owner_of: np.ndarray
    forget: np.ndarray
    clean_accuracy: float | None
    reference: nn.Module
    shared: dict[str, nn.Module]


def seed_models(cfg: BenchConfig, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor,
                num_classes: int, seed: int, behaviours: Iterable[str], cache: ModelCache) -> SeedModels:
    owner_of = owner_split(len(x), cfg.num_owners, seed)
    forget = owner_of == cfg.owner
    keep = torch.as_tensor(~forget)
    template = lambda: training.build_model(x, num_classes, 0)
    clean_accuracy = None
    if seed in cfg.seeds[: cfg.marking_cost_seeds]:
        clean, _ = cache.get(f"s{seed}-clean", lambda: training.fit(x, y, num_classes, cfg.train, seed), template)
        clean_accuracy = training.accuracy(clean, xt, yt)
    reference, _ = cache.get(f"s{seed}-reference",
                             lambda: training.fit(x[keep], y[keep], num_classes, cfg.train, seed + 7), template)
    state = ProviderState(x, y, forget, reference, [], num_classes, cfg.train, seed)
    shared = {}
    for b in behaviours:
        if b in FAMILY_INDEPENDENT:
            provider = providers.get(b, **cfg.provider_params.get(b, {}))
            shared[b] = cache.get(f"s{seed}-{b}", lambda: (provider.unlearn(state), []), template)[0]
    return SeedModels(owner_of, forget, clean_accuracy, reference, shared)


def verify_config(cfg: BenchConfig, seed: int) -> VerifyConfig:
    return VerifyConfig(cfg.alpha, cfg.beta, cfg.max_queries, seed=seed, membership_share=cfg.membership_share,
                        membership_samples=cfg.membership_samples, reallocate=cfg.reallocate)


def memo_endpoint(model: nn.Module) -> Endpoint:
    """``model_endpoint`` that answers a batch it has seen before from memory (same answers, counted
    as queries all the same): the fixed-n and sequential verifications ask the same membership
    batches, and the reference model answers the same batches for every behaviour of a seed."""
    base = model_endpoint(model)

    def remember(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        seen: dict[str, torch.Tensor] = {}

        def call(x: torch.Tensor) -> torch.Tensor:
            key = hashlib.sha1(x.contiguous().numpy().tobytes()).hexdigest() + str(tuple(x.shape))
            if key not in seen:
                seen[key] = fn(x)
            return seen[key]
        return call

    return Endpoint(remember(base.labels_fn), remember(base.probabilities_fn))


def membership_parts(served: Endpoint, reference: Endpoint, owner: QueryData, genuine: np.ndarray,
                     data: QueryData, seed: int) -> dict:
    """Diagnostics (no verdict): the calibrated membership AUC and p-value on the owner's genuine
    (never marked) samples and on the originals of its marked samples, each against its own
    class-matched non-members."""
    out = {}
    for name, rows in (("genuine", genuine), ("marked_originals", ~genuine)):
        if not rows.any():
            continue
        mx, my = owner.x[torch.as_tensor(rows)], owner.y[torch.as_tensor(rows)]
        non = torch.as_tensor(matched_non_members(my.numpy(), data.y.numpy(), 2, seed + 11))
        losses = [e.losses(a, b).numpy() for e in (served, reference) for a, b in ((mx, my), (data.x[non], data.y[non]))]
        r = membership_test(losses[0], losses[1], reference_member_losses=losses[2],
                            reference_non_member_losses=losses[3])
        out[f"membership_auc_{name}"], out[f"membership_p_{name}"] = r.auc, r.p_value
    return out


def verify_row(cfg: BenchConfig, wm: object, before: nn.Module, served: nn.Module, endpoint: Endpoint,
               reference: Endpoint, xt: torch.Tensor, yt: torch.Tensor, owner: QueryData, seed: int,
               calibrated: list[CalibratedMarker] | None = None) -> dict:
    """The owner's verification of one served model (fixed-n and sequential) as row fields; ``endpoint``
    answers for ``served``."""
    data = QueryData(xt, yt)
    vcfg = verify_config(cfg, seed)
    kw = dict(data=data, reference=reference, owner=owner, calibrated=calibrated)
    fixed = verify_deletion(model_endpoint(before), endpoint, wm, vcfg, **kw)
    seq = verify_deletion(model_endpoint(before), endpoint, wm, replace(vcfg, sequential=True), **kw)
    lead = next((m for m in fixed.markers if fixed.decided_by == f"backdoor:{m.family}"), fixed.markers[0])
    eligible = torch.as_tensor(np.flatnonzero(yt.numpy() != lead.target)[: cfg.eval_samples])
    mia = fixed.membership or {}
    return {
        "verdict": fixed.verdict, "decided_by": fixed.decided_by, "reason": fixed.reason, "queries": fixed.queries,
        "membership_queries": fixed.membership_queries, "hits": lead.verdict.hits, "k_star": lead.verdict.k_star,
        "p_value": lead.verdict.p_value, "power": lead.verdict.power, "p_hat": lead.calibration.p_hat,
        "q_hat": lead.calibration.q_hat, "p_low": lead.calibration.p_low, "q_high": lead.calibration.q_high,
        "markers": [m.as_dict() for m in fixed.markers],
        "sprt_verdict": seq.verdict, "sprt_queries": seq.queries,
        "basr_after": hits(torch_oracle(served), lead_trigger(wm, lead.family)(xt[eligible]), lead.target) / len(eligible),
        "membership_auc": mia.get("auc"), "membership_p_value": mia.get("p_value"),
        "membership_flagged": mia.get("flagged"), "alpha_membership": fixed.alpha_membership,
    }


def lead_trigger(wm: object, family: str):
    return next(m for m in markers_of(wm) if m.family == family).trigger


def run_group(cfg: BenchConfig, family: str, seed: int, sm: SeedModels, x: torch.Tensor, y: torch.Tensor,
              xt: torch.Tensor, yt: torch.Tensor, num_classes: int, behaviours: list[str],
              cache: ModelCache) -> Iterator[dict]:
    """All behaviours of one (family, seed); yields one row per behaviour."""
    t0 = time.time()
    key = OwnerKey.generate(cfg.owner, family, num_classes, seed=seed)
    params: dict = dict(cfg.family_params.get(family, {}))
    if family == "hidden_trigger":
        probe = build(key, tuple(x.shape[1:]), **params)
        src = torch.as_tensor((sm.owner_of == cfg.owner) & (y.numpy() == probe.source))
        params.update(features=_features(sm.reference), sources=x[src])
    wm = build(key, tuple(x.shape[1:]), **params)
    marked = mark(x, y, sm.owner_of, cfg.owner, wm, cfg.rate, seed)
    model, checkpoints = cache.get(f"s{seed}-{family}-marked",
                                   lambda: training.fit(marked.x, marked.y, num_classes, cfg.train, seed),
                                   lambda: training.build_model(x, num_classes, 0))
    owner = QueryData(x[torch.as_tensor(sm.forget)], y[torch.as_tensor(sm.forget)])  # originals, true labels
    genuine = ~marked.marked[sm.forget]
    data = QueryData(xt, yt)
    vcfg = verify_config(cfg, seed)
    reference = memo_endpoint(sm.reference)
    calibrated = calibrate_markers(model_endpoint(model), model_endpoint(sm.reference), wm, data, vcfg,
                                   calibration_alpha(backdoor_alpha(vcfg, True), len(markers_of(wm))))
    state = ProviderState(marked.x, marked.y, sm.forget, model, checkpoints, num_classes, cfg.train, seed,
                          original_x=x, original_y=y, marked=marked.marked)
    base = {
        "family": family, "watermark_params": cfg.family_params.get(family, {}), "seed": seed,
        "target": int(getattr(wm, "target", -1)), "marked": int(marked.marked.sum()),
        "owner_samples": int(sm.forget.sum()), **{f"invisibility_{k}": v for k, v in marked.invisibility.items()},
        "clean_accuracy_unmarked": sm.clean_accuracy, "clean_accuracy_marked": training.accuracy(model, xt, yt),
    }
    base["marking_cost"] = (None if sm.clean_accuracy is None
                            else base["clean_accuracy_unmarked"] - base["clean_accuracy_marked"])
    for i, behaviour in enumerate(behaviours):
        t1 = time.time()
        provider = providers.get(behaviour, **cfg.provider_params.get(behaviour, {}))
        if behaviour in sm.shared:
            served = sm.shared[behaviour]
        elif behaviour in CACHED_BEHAVIOURS:
            served = cache.get(f"s{seed}-{family}-{behaviour}", lambda: (provider.unlearn(state), []),
                               lambda: training.build_model(x, num_classes, 0))[0]
        else:
            served = provider.unlearn(state)
        expected = HONORED if provider.honest else NOT_HONORED
        endpoint = memo_endpoint(served)
        row = {**base, "behaviour": behaviour, "honest": provider.honest,
               **verify_row(cfg, wm, model, served, endpoint, reference, xt, yt, owner, seed, calibrated),
               **membership_parts(endpoint, reference, owner, genuine, data, seed),
               "clean_accuracy_after": training.accuracy(served, xt[: cfg.eval_samples], yt[: cfg.eval_samples])}
        row["correct"] = row["verdict"] == expected
        row["seconds"] = time.time() - (t0 if i == 0 else t1)
        flagged = getattr(provider, "flagged", None)
        if flagged is not None:
            row["scrub_flagged"] = int(len(flagged))
            row["scrub_marked_found"] = int(marked.marked[flagged].sum())
        yield row


def run(cfg: BenchConfig, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor, num_classes: int,
        done: set[tuple[str, str, int]], record: Callable[[dict], None],
        progress: Callable[[int], None] = lambda n: None, cache: ModelCache | None = None) -> None:
    """Run every missing (family, behaviour, seed) trial, calling ``record`` with each new row."""
    x, y = subset(x, y, cfg.train_samples)
    for seed in cfg.seeds:
        todo = {f: [b for b in cfg.behaviours if (f, b, seed) not in done] for f in cfg.families}
        if not any(todo.values()):
            continue
        needed = {b for bs in todo.values() for b in bs}
        cache = cache or ModelCache()
        sm = seed_models(cfg, x, y, xt, yt, num_classes, seed, needed, cache)
        for family, behaviours in todo.items():
            if behaviours:
                for row in run_group(cfg, family, seed, sm, x, y, xt, yt, num_classes, behaviours, cache):
                    record(row)
                    progress(1)


def summarise(rows: list[dict]) -> list[dict]:
    """Verdict rates per (family, behaviour): FPR on honest, FNR on dishonest, queries, costs."""
    out = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["family"], r["behaviour"]), []).append(r)
    for (family, behaviour), rs in sorted(groups.items()):
        verdicts = [r["verdict"] for r in rs]
        honest = rs[0]["honest"]
        extreme = lambda k, f: float(f([r[k] for r in rs if r.get(k) is not None])) if any(r.get(k) is not None for r in rs) else None
        mean = lambda k: extreme(k, np.mean)
        out.append({
            "family": family, "behaviour": behaviour, "honest": honest, "trials": len(rs),
            "honored": verdicts.count(HONORED) / len(rs), "not_honored": verdicts.count(NOT_HONORED) / len(rs),
            "inconclusive": verdicts.count("INCONCLUSIVE") / len(rs),
            "fpr" if honest else "fnr": (verdicts.count(NOT_HONORED) if honest else verdicts.count(HONORED)) / len(rs),
            "queries_mean": mean("queries"), "queries_max": max(r["queries"] for r in rs),
            "membership_queries_mean": mean("membership_queries"),
            "decided_by": ", ".join(f"{k} {v}" for k, v in Counter(r.get("decided_by") for r in rs).most_common()),
            "sprt_queries_mean": mean("sprt_queries"),
            "basr_before": mean("p_hat"), "basr_before_min": min(r["p_hat"] for r in rs),
            "basr_after": mean("basr_after"), "q_hat": mean("q_hat"),
            "marking_cost": mean("marking_cost"), "marking_cost_max": extreme("marking_cost", max),
            "clean_accuracy_marked": mean("clean_accuracy_marked"), "clean_accuracy_after": mean("clean_accuracy_after"),
            "psnr": mean("invisibility_psnr"), "ssim": mean("invisibility_ssim"),
            "membership_flag_rate": mean("membership_flagged"), "membership_auc": mean("membership_auc"),
            "membership_auc_sd": extreme("membership_auc", np.std), "membership_auc_min": extreme("membership_auc", min),
            "membership_auc_max": extreme("membership_auc", max),
            "membership_auc_genuine": mean("membership_auc_genuine"),
            "membership_auc_marked_originals": mean("membership_auc_marked_originals"),
            "seconds_mean": mean("seconds"),
        })
    return out
