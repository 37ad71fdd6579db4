"""Benchmark: provider behaviours × watermark families × seeds on an image classification set.

Per seed: an IID split into owners; owner ``owner`` marks a fraction ``rate`` of its samples. Models
that never depend on the watermark (the clean model for the accuracy cost, trained for the first
``marking_cost_seeds`` seeds (default: all); the reference model for q and for calibrated membership
inference, the honest retrain and SISA) are trained once per seed. Per (family, seed) the provider
trains the marked model once, p is calibrated on held-out triggered test images, then every behaviour
answers the deletion request from that same model and the owner verifies with fresh queries.
One result row per (family, behaviour, seed); rows already in ``done`` are skipped (resume).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from unlearning_verify import providers, training
from unlearning_verify.keys import OwnerKey
from unlearning_verify.marking import mark, owner_split
from unlearning_verify.membership import matched_non_members, membership_test
from unlearning_verify.providers import ProviderState
from unlearning_verify.verify import HONORED, NOT_HONORED, calibrate, hits, query_pool, verify
from unlearning_verify.watermarks import build

FAMILY_INDEPENDENT = ("retrain", "sisa")
CACHED_BEHAVIOURS = ("partial", "finetune", "gradient_ascent")


@dataclass
class BenchConfig:
    families: list[str] = field(default_factory=lambda: ["lsb"])
    behaviours: list[str] = field(default_factory=providers.names)
    seeds: list[int] = field(default_factory=lambda: list(range(20)))
    num_owners: int = 10
    owner: int = 0
    rate: float = 0.5
    alpha: float = 1e-3
    beta: float = 1e-3
    max_queries: int = 30
    membership_alpha: float = 0.01
    marking_cost_seeds: int = 20
    train: training.TrainConfig = field(default_factory=training.TrainConfig)
    provider_params: dict[str, dict] = field(default_factory=dict)
    family_params: dict[str, dict] = field(default_factory=dict)


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


def _oracle(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: training.predict(model, x)


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


def run_group(cfg: BenchConfig, family: str, seed: int, sm: SeedModels, x: torch.Tensor, y: torch.Tensor,
              xt: torch.Tensor, yt: torch.Tensor, num_classes: int, behaviours: list[str],
              cache: ModelCache) -> list[dict]:
    """All behaviours of one (family, seed); returns one row per behaviour."""
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
    source = getattr(wm, "source", None) if wm.clean_label else None
    pool = query_pool(xt, yt, wm.target, source, seed)
    cal_idx, ver_idx = pool[: len(pool) // 2], pool[len(pool) // 2:]
    cal = wm.trigger(xt[cal_idx])
    p_hits, q_hits = hits(_oracle(model), cal, wm.target), hits(_oracle(sm.reference), cal, wm.target)
    calibration = calibrate(p_hits, len(cal), q_hits, len(cal), num_classes, cfg.alpha, cfg.beta)
    genuine = torch.as_tensor(sm.forget & ~marked.marked)
    non_members = torch.as_tensor(matched_non_members(y[genuine].numpy(), yt.numpy(), 2, seed + 11))
    ref_member = training.per_sample_loss(sm.reference, x[genuine], y[genuine]).numpy()
    ref_non = training.per_sample_loss(sm.reference, xt[non_members], yt[non_members]).numpy()
    state = ProviderState(marked.x, marked.y, sm.forget, model, checkpoints, num_classes, cfg.train, seed)
    base = {
        "family": family, "watermark_params": cfg.family_params.get(family, {}), "seed": seed, "target": wm.target,
        "marked": int(marked.marked.sum()),
        "owner_samples": int(sm.forget.sum()), **{f"invisibility_{k}": v for k, v in marked.invisibility.items()},
        "clean_accuracy_unmarked": sm.clean_accuracy, "clean_accuracy_marked": training.accuracy(model, xt, yt),
        "p_hat": calibration.p_hat, "q_hat": calibration.q_hat, "p_low": calibration.p_low,
        "q_high": calibration.q_high,
    }
    base["marking_cost"] = (None if sm.clean_accuracy is None
                            else base["clean_accuracy_unmarked"] - base["clean_accuracy_marked"])
    rows = []
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
        order = np.random.default_rng([seed, zlib.crc32(behaviour.encode())]).permutation(len(ver_idx))
        queries = wm.trigger(xt[ver_idx[torch.as_tensor(order)]])
        kw = dict(alpha=cfg.alpha, beta=cfg.beta, max_queries=cfg.max_queries)
        fixed = verify(_oracle(served), queries, wm.target, calibration, **kw)
        seq = verify(_oracle(served), queries, wm.target, calibration, sequential=True, **kw)
        mia = membership_test(
            training.per_sample_loss(served, x[genuine], y[genuine]).numpy(),
            training.per_sample_loss(served, xt[non_members], yt[non_members]).numpy(),
            alpha=cfg.membership_alpha, reference_member_losses=ref_member, reference_non_member_losses=ref_non)
        expected = HONORED if provider.honest else NOT_HONORED
        row = {
            **base, "behaviour": behaviour, "honest": provider.honest,
            "verdict": fixed.verdict, "reason": fixed.reason, "queries": fixed.queries, "hits": fixed.hits,
            "k_star": fixed.k_star, "p_value": fixed.p_value, "power": fixed.power,
            "correct": fixed.verdict == expected,
            "sprt_verdict": seq.verdict, "sprt_queries": seq.queries,
            "basr_after": hits(_oracle(served), wm.trigger(xt[ver_idx]), wm.target) / len(ver_idx),
            "clean_accuracy_after": training.accuracy(served, xt, yt),
            "membership_auc": mia.auc, "membership_p_value": mia.p_value, "membership_flagged": mia.flagged,
            "seconds": time.time() - (t0 if i == 0 else t1),
        }
        flagged = getattr(provider, "flagged", None)
        if flagged is not None:
            row["scrub_flagged"] = int(len(flagged))
            row["scrub_marked_found"] = int(marked.marked[flagged].sum())
        rows.append(row)
    return rows


def run(cfg: BenchConfig, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor, num_classes: int,
        done: set[tuple[str, str, int]], record: Callable[[dict], None],
        progress: Callable[[int], None] = lambda n: None, cache: ModelCache | None = None) -> None:
    """Run every missing (family, behaviour, seed) trial, calling ``record`` with each new row."""
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
                progress(len(behaviours))


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
            "sprt_queries_mean": mean("sprt_queries"),
            "basr_before": mean("p_hat"), "basr_before_min": min(r["p_hat"] for r in rs),
            "basr_after": mean("basr_after"), "q_hat": mean("q_hat"),
            "marking_cost": mean("marking_cost"), "marking_cost_max": extreme("marking_cost", max),
            "clean_accuracy_marked": mean("clean_accuracy_marked"), "clean_accuracy_after": mean("clean_accuracy_after"),
            "psnr": mean("invisibility_psnr"), "ssim": mean("invisibility_ssim"),
            "membership_flag_rate": mean("membership_flagged"), "membership_auc": mean("membership_auc"),
            "seconds_mean": mean("seconds"),
        })
    return out
