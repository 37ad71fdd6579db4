from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fedharness.attacks.hidden_trigger import (BASES, HiddenTriggerConfig, Patch, TransferConfig, collide_batch,
                                               generate, noise_poisons, pair, resize)
from fedharness.tasks.image_classification import SmallCNN
from labcore.errors import InputError


@pytest.fixture(scope="module")
def extractor():
    torch.manual_seed(0)
    net = SmallCNN().eval().requires_grad_(False)
    return lambda x: net.features(net.body(x))


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 1, 28, 28, generator=g), torch.rand(10, 1, 28, 28, generator=g)


def test_poisons_stay_in_eps_ball_and_keep_labels(extractor, images):
    targets, sources = images
    labels = torch.full((6,), 8)
    cfg = HiddenTriggerConfig(eps=8 / 255, lr=0.5, max_iterations=15, halve_every=5, stop_loss=0.0, batch_size=4)
    out = generate(extractor, targets, labels, sources, Patch.random(1, 5, 0), cfg, seed=0)
    assert torch.equal(out.labels, labels) and out.labels is not labels
    assert float((out.poisons - targets).abs().max()) <= 8 / 255 + 1e-6
    assert float(out.poisons.min()) >= 0 and float(out.poisons.max()) <= 1
    assert out.iterations == [15, 15]  # two batches (4 + 2 poisons), no early stop at stop_loss 0
    assert not torch.equal(out.poisons, targets)


def test_feature_distance_to_patched_sources_falls(extractor, images):
    targets, sources = images
    patched = Patch.random(1, 5, 0).apply(sources[:6], True, torch.Generator().manual_seed(2))
    cfg = HiddenTriggerConfig(eps=16 / 255, lr=0.5, max_iterations=30, halve_every=10, stop_loss=0.0)
    poisons, trace = collide_batch(extractor, targets, patched, cfg)
    assert len(trace) == 30
    assert trace[-1] < 0.8 * trace[0]
    assert np.mean(trace[20:]) < np.mean(trace[:10])
    with torch.no_grad():
        src = extractor(patched)
        before = torch.cdist(extractor(targets), src).pow(2).min(1).values.mean()
        after = torch.cdist(extractor(poisons), src).pow(2).min(1).values.mean()
    assert after < before


@pytest.mark.parametrize("optimizer", ["sign", "adam"])
def test_normalised_steps_stay_in_the_ball_and_fall_faster_than_the_plain_step(extractor, images, optimizer):
    targets, sources = images
    patched = Patch.random(1, 5, 0).apply(sources[:6], True, torch.Generator().manual_seed(2))
    common = {"eps": 8 / 255, "max_iterations": 5, "halve_every": 100, "stop_loss": 0.0}
    _, plain = collide_batch(extractor, targets, patched, HiddenTriggerConfig(lr=0.01, **common))
    poisons, fast = collide_batch(extractor, targets, patched,
                                  HiddenTriggerConfig(lr=2 / 255, optimizer=optimizer, **common))
    assert float((poisons - targets).abs().max()) <= 8 / 255 + 1e-6
    assert float(poisons.min()) >= 0 and float(poisons.max()) <= 1
    assert plain[0] == pytest.approx(fast[0])
    assert fast[-1] < 0.5 * plain[-1]
    with pytest.raises(InputError):
        HiddenTriggerConfig(optimizer="lbfgs")


def test_early_stop_when_largest_pair_loss_is_below_threshold(extractor, images):
    targets, sources = images
    cfg = HiddenTriggerConfig(max_iterations=50, stop_loss=1e9)
    poisons, trace = collide_batch(extractor, targets, sources[:6], cfg)
    assert len(trace) == 1 and torch.equal(poisons, targets)


def test_repairing_is_one_to_one_and_optimal():
    g = torch.Generator().manual_seed(3)
    poison_feats, source_feats = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    cols = pair(poison_feats, source_feats)
    assert sorted(cols.tolist()) == list(range(5))
    cost = torch.cdist(poison_feats, source_feats)
    best = min(itertools.permutations(range(5)), key=lambda p: float(sum(cost[i, j] for i, j in enumerate(p))))
    assert float(sum(cost[i, j] for i, j in enumerate(cols))) == pytest.approx(float(sum(cost[i, j] for i, j in enumerate(best))))
    # Greedy nearest-neighbour would give both poisons source 0; the matching must not.
    crowded = pair(torch.tensor([[0.0], [0.1]]), torch.tensor([[0.05], [5.0]]))
    assert sorted(crowded.tolist()) == [0, 1]


def test_noise_control_and_patch_placement():
    x = torch.full((3, 1, 10, 10), 0.5)
    noisy = noise_poisons(x, 4 / 255, seed=0)
    assert float((noisy - x).abs().max()) <= 4 / 255 + 1e-7 and not torch.equal(noisy, x)
    patch = Patch(torch.ones(1, 3, 3))
    fixed = patch.apply(torch.zeros(2, 1, 10, 10), False, torch.Generator())
    assert torch.equal(fixed[:, 0, 6:9, 6:9], torch.ones(2, 3, 3)) and float(fixed.sum()) == 18
    moved = patch.apply(torch.zeros(50, 1, 10, 10), True, torch.Generator().manual_seed(0))
    assert (moved.flatten(1).sum(1) == 9).all() and len({tuple(m.nonzero()[0].tolist()) for m in moved}) > 1
    with pytest.raises(InputError):
        Patch(torch.ones(1, 10, 10)).apply(torch.zeros(1, 1, 10, 10), False, torch.Generator())
    with pytest.raises(InputError):
        HiddenTriggerConfig(eps=0.0)


def test_nearest_bases_pick_the_targets_closest_to_the_patched_sources_and_resize_keeps_range():
    targets = torch.tensor([[5.0, 0.0], [0.9, 1.1], [9.0, 9.0], [1.0, 1.0], [-3.0, 0.0]])
    patched = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    assert BASES["nearest"](targets, patched, 2, g).tolist() == [3, 1]
    picked = BASES["random"](targets, patched, 3, g)
    assert len(set(picked.tolist())) == 3
    x = torch.rand(2, 1, 28, 28, generator=g)
    big = resize(x, 56)
    assert big.shape == (2, 1, 56, 56) and float(big.min()) >= 0 and float(big.max()) <= 1
    assert resize(x, 28) is x
    with pytest.raises(InputError):
        TransferConfig(bases="closest")


def test_relocation_draws_new_patch_places_every_relocate_every_iterations(extractor, images):
    targets, sources = images
    patch, g = Patch.random(1, 5, 0), torch.Generator().manual_seed(4)
    draws: list[torch.Tensor] = []

    def draw() -> torch.Tensor:
        draws.append(patch.apply(sources[:6], True, g))
        return draws[-1]

    cfg = HiddenTriggerConfig(lr=2 / 255, optimizer="sign", max_iterations=6, relocate_every=2, stop_loss=0.0)
    poisons, trace = collide_batch(extractor, targets, draw, cfg)
    assert len(trace) == 6 and len(draws) == 3  # iterations 0, 2, 4
    assert not torch.equal(draws[0], draws[1])
    assert float((poisons - targets).abs().max()) <= cfg.eps + 1e-6
    once = HiddenTriggerConfig(lr=2 / 255, optimizer="sign", max_iterations=6, stop_loss=0.0)
    draws.clear()
    collide_batch(extractor, targets, draw, once)
    assert len(draws) == 1
    with pytest.raises(InputError):
        HiddenTriggerConfig(relocate_every=-1)


def test_grid_trigger_is_a_random_4x4_grid_resized_bilinearly():
    grid = Patch.random(1, 12, seed=0, kind="grid").pattern
    again = Patch.random(1, 12, seed=0, kind="grid").pattern
    assert grid.shape == (1, 12, 12) and torch.equal(grid, again)
    assert float(grid.min()) >= 0 and float(grid.max()) <= 1
    assert float(grid.std()) > 0.05 and not torch.equal(grid, Patch.random(1, 12, seed=1, kind="grid").pattern)
    steps = (grid[:, :, 1:] - grid[:, :, :-1]).abs()
    assert float(steps.max()) < 0.5  # smooth between the 4×4 cells, unlike the binary pattern
    binary = Patch.random(1, 12, seed=0).pattern  # the default
    assert set(binary.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(InputError):
        Patch.random(1, 12, seed=0, kind="checkerboard")


def test_strongest_patch_is_the_draw_that_moves_source_features_most():
    from fedharness.attacks.hidden_trigger import strongest_patch

    sources = torch.zeros(3, 1, 10, 10)
    flat = lambda z: z.flatten(1)  # on black images the shift is the pattern's squared mass
    chosen = strongest_patch(flat, sources, 1, 4, seed=0, kind="binary", draws=6)
    masses = [float(Patch.random(1, 4, k, "binary").pattern.sum()) for k in range(6)]
    assert float(chosen.pattern.sum()) == max(masses) and len(set(masses)) > 1
    assert torch.equal(strongest_patch(flat, sources, 1, 4, 0, "binary", 1).pattern,
                       Patch.random(1, 4, 0, "binary").pattern)
    with pytest.raises(InputError):
        TransferConfig(trigger_draws=0)


def test_orthogonal_shift_ignores_the_movement_along_the_class_direction():
    from fedharness.attacks.hidden_trigger import orthogonal_shift

    shift = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    assert float(orthogonal_shift(shift, torch.tensor([2.0, 0.0]))) == pytest.approx((16 + 4) / 2)
    assert float(orthogonal_shift(shift, torch.tensor([0.0, 1.0]))) == pytest.approx(9 / 2)


def test_designed_patch_moves_features_further_off_the_class_direction_and_stays_in_range():
    from fedharness.attacks.hidden_trigger import TriggerDesign, designed_patch, orthogonal_shift
    from fedharness.tasks.head_finetune import HeadFitConfig, fit_head

    g = torch.Generator().manual_seed(0)
    sources = torch.rand(40, 1, 10, 10, generator=g) * 0.3
    targets = sources.clone()
    targets[:, :, :4, :4] += 0.6  # the classes differ in the top-left corner; the patch sits bottom-right
    flat = lambda z: z.flatten(1)
    start = Patch(torch.full((1, 4, 4), 0.5))  # grey: the ascent has to find that white moves them most
    design = TriggerDesign(steps=100, images=40)
    assert designed_patch(flat, sources, targets, start, TriggerDesign(steps=0), False, 0) is start  # off
    made = designed_patch(flat, sources, targets, start, design, False, 0)
    assert made.pattern.shape == start.pattern.shape
    assert float(made.pattern.min()) >= 0 and float(made.pattern.max()) <= 1
    labels = torch.cat([torch.zeros(40), torch.ones(40)]).long()
    fit = HeadFitConfig(design.head_steps, design.head_l2)
    head = fit_head(torch.cat([flat(sources), flat(targets)]), labels, 2, fit, 0)
    normal = head.weight[1] - head.weight[0]
    moved = lambda p: orthogonal_shift(flat(p.apply(sources, False, g)) - flat(sources), normal)
    assert float(moved(made)) > 3 * float(moved(start)) and float(made.pattern.min()) > 0.9  # white
    for bad in ({"steps": -1}, {"images": 0}):
        with pytest.raises(InputError):
            TriggerDesign(**bad)
