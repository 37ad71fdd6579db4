"""Every defense against a hand-computed case, NaN/Inf rejection, composition, and Flower equality."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fedharness import aggregators
from labcore.errors import InputError

CTX = {"seed": 3, "round_index": 5, "client_ids": list(range(8))}


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_median_and_trimmed_mean_by_hand():
    u = t([[1, 10], [2, 20], [4, 40], [100, -5]])
    assert torch.allclose(aggregators.get("median")(u), t([3, 15]))
    assert torch.allclose(aggregators.get("trimmed_mean", beta=0.25)(u), t([3, 15]))
    assert torch.allclose(aggregators.get("trimmed_mean", beta=0.0)(u), u.mean(0))


def test_krum_and_multi_krum_by_hand():
    # f=0: score = sum of the m−f−2 = 2 nearest squared distances → 10, 5, 13, 130.
    u = t([[0.0], [1.0], [3.0], [10.0]])
    stats: dict = {}
    assert torch.equal(aggregators.get("krum", f=0)(u, stats=stats), t([1.0]))
    assert stats["accepted_rows"] == [1]
    stats = {}
    assert torch.equal(aggregators.get("multi_krum", f=0, k=2)(u, stats=stats), t([0.5]))
    assert stats["accepted_rows"] == [0, 1]


def _naive_bulyan(u: np.ndarray, f: int) -> np.ndarray:
    """Reference Bulyan with python loops: iterative Krum, then β closest to the median per coordinate."""
    alive = list(range(len(u)))
    picked = []
    for _ in range(len(u) - 2 * f):
        n = len(alive)
        scores = {i: sum(sorted(float(((u[i] - u[j]) ** 2).sum()) for j in alive if j != i)[: max(1, n - f - 2)])
                  for i in alive}
        best = min(alive, key=lambda i: (scores[i], i))
        picked.append(best)
        alive.remove(best)
    sel = u[picked]
    beta = len(picked) - 2 * f
    out = []
    for col in sel.T:
        med = np.median(col)
        out.append(np.mean(sorted(col, key=lambda v: abs(v - med))[:beta]))
    return np.array(out)


def test_bulyan_matches_naive_paper_algorithm():
    rng = np.random.default_rng(0)
    u = rng.standard_normal((11, 6)).astype(np.float32)
    u[9] += 20.0  # two far-away attackers
    u[10] -= 20.0
    stats: dict = {}
    got = aggregators.get("bulyan", f=2)(torch.from_numpy(u), stats=stats).numpy()
    np.testing.assert_allclose(got, _naive_bulyan(u, 2), atol=1e-5)
    assert 9 not in stats["accepted_rows"] and 10 not in stats["accepted_rows"]
    with pytest.raises(InputError, match="at least 11"):
        aggregators.get("bulyan", f=2)(torch.from_numpy(u[:10]))


def test_geometric_median_of_collinear_points_is_the_middle_one():
    u = t([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    assert torch.allclose(aggregators.get("geometric_median", iters=500)(u), t([1.0, 0.0]), atol=1e-3)


def test_norm_clip_fixed_and_adaptive():
    u = t([[3.0, 4.0], [0.3, 0.4], [0.0, 2.0]])
    stats: dict = {}
    assert torch.allclose(aggregators.get("norm_clip", rho=1.0)(u, stats=stats), t([0.9, 2.2]) / 3)
    assert stats["clipped"] == 2
    # quantile 0.5 of norms (5, 0.5, 2) is 2: rows clipped to norm 2.
    clipped = aggregators.get("norm_clip", quantile=0.5).transform(u)
    assert torch.allclose(clipped.norm(dim=1), t([2.0, 0.5, 2.0]))
    with pytest.raises(InputError):
        aggregators.get("norm_clip")


def test_dp_noise_levels_and_reproducibility():
    u = torch.zeros(4, 200_000)
    u[:, 0] = 10.0
    weak = aggregators.get("weak_dp", rho=1.0, sigma=0.05)
    out = weak(u, **CTX)
    assert abs(float(out[1:].std()) - 0.05) < 0.002
    assert abs(float(out[0]) - 1.0) < 0.3
    assert torch.equal(out, weak(u, **CTX))
    assert not torch.equal(out, weak(u, **{**CTX, "round_index": 6}))
    central = aggregators.get("central_dp", clip=2.0, noise_multiplier=1.0)(u, **CTX)
    assert abs(float(central[1:].std()) - 2.0 / 4) < 0.01


def test_centered_clip_by_hand():
    u = t([[10.0, 0.0], [0.0, 0.0]])
    assert torch.allclose(aggregators.get("centered_clip", tau=1.0, iters=1)(u), t([0.5, 0.0]))
    assert torch.allclose(aggregators.get("centered_clip", tau=100.0, iters=1)(u), u.mean(0))


def test_bucketing_and_nnm_by_hand():
    u = t([[0.0], [1.0], [10.0]])
    assert torch.allclose(aggregators.get("nnm", f=1).transform(u), t([[0.5], [0.5], [5.5]]))
    buckets = aggregators.get("bucketing", s=2).transform(u, **CTX)
    assert buckets.shape == (2, 1)
    assert float(buckets.sum()) in {0.5 + 10.0, 5.5 + 1.0, 5.0 + 0.0}
    assert torch.allclose(aggregators.get("bucketing", s=3)(u, **CTX), u.mean(0))


def test_fltrust_by_hand():
    root = t([1.0, 0.0])
    u = t([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]])
    stats: dict = {}
    out = aggregators.get("fltrust")(u, stats=stats, root_update=root)
    assert torch.allclose(out, t([1.5, 0.5]) / (1 + 2**-0.5), atol=1e-6)
    assert stats["accepted_rows"] == [0, 3]
    with pytest.raises(InputError, match="root_update"):
        aggregators.get("fltrust")(u)


def test_flame_drops_the_opposed_minority():
    rng = torch.Generator().manual_seed(0)
    base = torch.randn(50, generator=rng)
    benign = base + 0.1 * torch.randn(6, 50, generator=rng)
    attack = -5 * base + 0.1 * torch.randn(2, 50, generator=rng)
    stats: dict = {}
    out = aggregators.get("flame", noise_lambda=0.0)(torch.cat([benign, attack]), stats=stats, **CTX)
    kept = stats["accepted_rows"]
    assert set(kept) <= set(range(6)) and len(kept) >= 5  # the majority cluster (min size m/2 + 1)
    bound = torch.cat([benign, attack]).norm(dim=1).median()
    from fedharness.aggregators.norm_clip import clip_rows
    assert torch.allclose(out, clip_rows(benign[kept], bound).mean(0), atol=1e-6)


def test_foolsgold_zeroes_sybils():
    rng = torch.Generator().manual_seed(1)
    honest = torch.randn(3, 40, generator=rng)
    sybil = torch.randn(40, generator=rng)
    u = torch.cat([honest, sybil.expand(2, 40)])
    stats: dict = {}
    out = aggregators.get("foolsgold")(u, stats=stats, client_ids=[10, 11, 12, 13, 14])
    w = stats["foolsgold_weights"]
    assert w[3] == 0.0 and w[4] == 0.0 and min(w[:3]) > 0.5
    assert torch.allclose(out, (torch.tensor(w[:3])[:, None] * honest).sum(0) / sum(w[:3]), atol=1e-5)


def test_validation_testing_rejects_harmful_updates():
    u = t([[0.0, 1.0], [0.5, 1.0], [0.05, 3.0]])
    score = lambda rows: 1.0 - rows[:, 0]  # noqa: E731  the "accuracy" of G + row
    stats: dict = {}
    out = aggregators.get("validation", tolerance=0.1)(u, stats=stats, validate=score)
    assert stats["accepted_rows"] == [0, 2] and stats["validation_baseline"] == 1.0
    assert torch.allclose(out, t([0.025, 2.0]))
    weighted = aggregators.get("validation", tolerance=0.1, mode="weight")(u, validate=score)
    assert torch.allclose(weighted, (1.0 * u[0] + 0.95 * u[2]) / 1.95)


def _rule(name: str):
    params = {"norm_clip": {"rho": 1.0}, "bulyan": {"f": 1}, "flame": {"noise_lambda": 0.0}}
    return aggregators.get(name, **params.get(name, {}))


@pytest.mark.parametrize("name", aggregators.names())
def test_every_rule_rejects_nonfinite_rows(name: str):
    rng = torch.Generator().manual_seed(2)
    clean = torch.randn(8, 30, generator=rng)
    dirty = torch.cat([clean[:3], torch.full((1, 30), float("nan")), clean[3:6], torch.full((1, 30), float("inf")), clean[6:]])
    ctx = {**CTX, "client_ids": list(range(10)), "root_update": clean[0],
           "validate": lambda rows: -rows.norm(dim=1) / 100}
    stats: dict = {}
    out = _rule(name)(dirty, stats=stats, **ctx)
    assert stats["rejected_nonfinite"] == 2
    assert torch.isfinite(out).all()
    ctx_clean = {**ctx, "client_ids": [i for i in range(10) if i not in (3, 7)]}
    assert torch.allclose(out, _rule(name)(clean, **ctx_clean), atol=1e-5)
    with pytest.raises(ValueError, match="NaN/Inf"):
        _rule(name)(torch.full((3, 30), float("nan")), **ctx)


def test_compose_clips_before_median_and_maps_rows_back():
    u = t([[3.0, 4.0], [float("nan"), 0.0], [0.0, 1.0], [0.0, 0.9], [0.0, 0.5]])
    pipeline = aggregators.compose(aggregators.get("norm_clip", rho=1.0), aggregators.get("krum", f=0))
    stats: dict = {}
    out = pipeline(u, stats=stats)
    assert stats["rejected_nonfinite"] == 1
    # clipped finite rows (.6,.8), (0,1), (0,.9), (0,.5): Krum scores .77, .26, .17, .41 → input row 3
    assert stats["accepted_rows"] == [3]
    assert torch.allclose(out, t([0.0, 0.9]))
    with pytest.raises(InputError, match="not a pre-aggregator"):
        aggregators.compose(aggregators.get("median"), aggregators.get("mean"))


@pytest.mark.flower
def test_equal_to_flower_builtins():
    fb = pytest.importorskip("fedharness.engines.flower_builtins")
    rng = np.random.default_rng(0)
    for m, d in itertools.product((7, 12), (1, 500)):
        u = rng.standard_normal((m, d)).astype(np.float32)
        u[-1] *= 30.0
        tu, contents = torch.from_numpy(u), fb.records(u)
        checks = [
            (aggregators.get("median")(tu), fb.fed_median(u)),
            (aggregators.get("trimmed_mean", beta=0.2)(tu), fb.fed_trimmed_avg(u, 0.2)),
            (aggregators.get("krum", f=1)(tu), fb.multi_krum(contents, 1, 1)),
            (aggregators.get("multi_krum", f=1, k=4)(tu), fb.multi_krum(contents, 1, 4)),
            (aggregators.get("bulyan", f=1, iterative=False)(tu), fb.bulyan(contents, 1)),
        ]
        for ours, theirs in checks:
            np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5, rtol=0)
