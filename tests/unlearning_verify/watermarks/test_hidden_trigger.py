import torch

from fedharness.tasks.image_classification import SmallCNN
from unlearning_verify.keys import OwnerKey
from unlearning_verify.watermarks import build


def test_poisons_stay_within_eps_and_approach_patched_sources():
    torch.manual_seed(0)
    net = SmallCNN().eval()
    feats = lambda x: net.features(net.body(x))
    g = torch.Generator().manual_seed(1)
    key = OwnerKey.generate(0, "hidden_trigger", 10, seed=0)
    sources = torch.rand(8, 1, 28, 28, generator=g)
    wm = build(key, (1, 28, 28), features=feats, sources=sources, iterations=25)
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
