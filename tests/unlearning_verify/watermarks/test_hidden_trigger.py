import pytest
import torch

from fedharness.tasks.head_finetune import ExtractorHead
from fedharness.tasks.image_classification import SmallCNN
from labcore.errors import InputError
from unlearning_verify.keys import OwnerKey
from unlearning_verify.verify import HONORED, INCONCLUSIVE, Verdict
from unlearning_verify.watermarks import build
from unlearning_verify.watermarks.hidden_trigger import check_assumptions, explain, nearest_source


def surrogate() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN().eval().requires_grad_(False)


def test_poisons_stay_within_eps_and_approach_patched_sources():
    net = surrogate()
    feats = lambda x: net.features(net.body(x))
    g = torch.Generator().manual_seed(1)
    key = OwnerKey.generate(0, "hidden_trigger", 10, seed=0)
    sources = torch.rand(8, 1, 28, 28, generator=g)
    wm = build(key, (1, 28, 28), features=feats, sources=sources, max_iterations=25)
    assert wm.clean_label and wm.source != wm.target
    targets = torch.rand(8, 1, 28, 28, generator=g)
    y = torch.full((8,), wm.target)
    poisons, labels = wm.poison(targets, y)
    assert torch.equal(labels, y)
    assert (poisons - targets).abs().max() <= 16 / 255 + 1e-6
    assert poisons.min() >= 0 and poisons.max() <= 1
    with torch.no_grad():
        src = feats(wm.trigger(sources))
        before = torch.cdist(feats(targets), src).min(1).values.mean()
        after = torch.cdist(feats(poisons), src).min(1).values.mean()
    assert after < before


def verdict(kind: str, p_low: float = 0.0, q_high: float = 0.1) -> Verdict:
    return Verdict(kind, "watermark not learned", 0, 0, None, None, None, None, p_low, q_high, False)


def test_verdict_says_when_the_served_model_breaks_the_transfer_assumption():
    net = surrogate()
    feats = lambda x: net.features(net.body(x))
    probe = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    transfer = check_assumptions(feats, ExtractorHead(net, 10), probe)
    torch.manual_seed(5)
    scratch = check_assumptions(feats, SmallCNN(), probe)  # a provider that trained its own features
    assert transfer.holds and transfer.feature_gap < 1e-6
    assert not scratch.holds and scratch.feature_gap > 0.2
    broken = explain(verdict(INCONCLUSIVE), scratch)
    assert broken.verdict == INCONCLUSIVE and "does not hold" in broken.reason and "not learned" in broken.reason
    held = explain(verdict(INCONCLUSIVE), transfer).reason
    assert transfer.head_classes == 10 and "assumption holds" in held and "not learned by a 10-way head" in held
    assert "too weakly to decide" in explain(verdict(INCONCLUSIVE, 0.5, 0.1), transfer).reason
    assert "trigger alone" in explain(verdict(INCONCLUSIVE, 0.9, 1.0), transfer).reason
    assert explain(verdict(HONORED), transfer) == verdict(HONORED)


def test_owner_picks_the_source_class_nearest_the_target_in_surrogate_features():
    x = torch.cat([torch.zeros(3, 1, 4, 4), torch.full((3, 1, 4, 4), 0.9), torch.full((3, 1, 4, 4), 0.2)])
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    feats = lambda z: z.flatten(1)
    assert nearest_source(feats, lambda z: z, x, y, target=0) == 2
    assert nearest_source(feats, lambda z: z, x, y, target=1) == 2
    shift = lambda z: z + (z.mean((1, 2, 3), keepdim=True) > 0.5).float() * -0.9  # the trigger erases class 1
    assert nearest_source(feats, shift, x, y, target=0) == 1
    with pytest.raises(InputError):
        nearest_source(feats, lambda z: z, x[:3], y[:3], target=0)
    with pytest.raises(InputError):  # no image of the target class: refused before any distance
        nearest_source(feats, lambda z: z, x[3:], y[3:], target=0)


@pytest.mark.parametrize("near", [1, 2])
def test_owner_rehearsal_picks_the_class_its_poisons_can_reach(near):
    from fedharness.attacks.hidden_trigger import small_extractor_config
    from unlearning_verify.watermarks.hidden_trigger import HiddenTriggerWatermark, rehearsed_source
    from unlearning_verify.watermarks.patch import PatchWatermark

    g = torch.Generator().manual_seed(0)
    flat = lambda v: (torch.full((12, 1, 6, 6), v) + 0.005 * torch.rand(12, 1, 6, 6, generator=g)).clamp(0, 1)
    # identity features; class `near` lies within ε of the target images (zeros), the other class far away
    x = torch.cat([flat(0.0), flat(0.03 if near == 1 else 0.8), flat(0.8 if near == 1 else 0.03)])
    y = torch.arange(3).repeat_interleave(12)
    wm = HiddenTriggerWatermark(0, 1, PatchWatermark(0, torch.ones(1, 2, 2), 0, 0), 0,
                                small_extractor_config(max_iterations=30), lambda z: z.flatten(1))
    assert rehearsed_source(wm, x, y, 3, seed=0) == near
    with pytest.raises(InputError):
        rehearsed_source(wm, x[12:], y[12:], 3, seed=0)


def test_transfer_verification_rejects_a_negative_trigger_design():
    from unlearning_verify.watermarks.hidden_trigger import TransferVerifyConfig

    assert TransferVerifyConfig(trigger_steps=100).trigger_steps == 100
    with pytest.raises(InputError):
        TransferVerifyConfig(trigger_steps=-1)


def test_redesign_replaces_only_the_keys_pattern_by_the_attacks_designed_one():
    from fedharness.attacks.hidden_trigger import TriggerDesign, designed_patch
    from unlearning_verify.watermarks.hidden_trigger import redesign

    net = surrogate()
    feats = lambda x: net.features(net.body(x))
    g = torch.Generator().manual_seed(2)
    key = OwnerKey.generate(0, "hidden_trigger", 10, seed=0)
    sources, targets = torch.rand(12, 1, 28, 28, generator=g), torch.rand(12, 1, 28, 28, generator=g)
    wm = build(key, (1, 28, 28), features=feats, sources=sources, max_iterations=5)
    before, start = wm.patch, wm.attack_patch()
    redesign(wm, feats, targets, steps=10, seed=0)
    made = designed_patch(feats, sources, targets, start, TriggerDesign(steps=10), random_location=False, seed=0)
    assert (wm.patch.top, wm.patch.left, wm.patch.target) == (before.top, before.left, before.target)
    assert torch.equal(wm.patch.pattern, made.pattern) and not torch.equal(made.pattern, before.pattern)
    patched = wm.trigger(sources)
    rows, cols = slice(before.top, before.top + made.pattern.shape[-2]), slice(before.left, before.left + made.pattern.shape[-1])
    assert torch.equal(patched[..., rows, cols], made.pattern.expand_as(patched[..., rows, cols]))
