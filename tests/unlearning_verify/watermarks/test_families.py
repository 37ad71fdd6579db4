import numpy as np
import pytest
import torch
from scipy.fft import dctn

from unlearning_verify.invisibility import invisibility
from unlearning_verify.keys import OwnerKey
from unlearning_verify.watermarks import build
from unlearning_verify.watermarks.text import TextWatermark


def images(n=8):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, 28, 28, generator=g) * 255).round() / 255  # 8-bit images


@pytest.mark.parametrize("family", ["lsb", "blended", "wanet", "frequency", "patch"])
def test_family_is_key_specific_and_deterministic(family):
    x = images()
    a = build(OwnerKey.generate(0, family, 10, seed=0), (1, 28, 28)).trigger(x)
    again = build(OwnerKey.generate(0, family, 10, seed=0), (1, 28, 28)).trigger(x)
    other = build(OwnerKey.generate(0, family, 10, seed=9), (1, 28, 28)).trigger(x)
    assert torch.equal(a, again)
    assert not torch.allclose(a, other)
    assert not torch.allclose(a, x)
    assert a.min() >= 0 and a.max() <= 1


def test_blended_formula():
    wm = build(OwnerKey.generate(0, "blended", 10, seed=0), (1, 28, 28))
    x = images()
    assert torch.allclose(wm.trigger(x), 0.8 * x + 0.2 * wm.pattern)


def test_frequency_raises_the_chosen_dct_coefficients():
    wm = build(OwnerKey.generate(0, "frequency", 10, seed=0), (1, 28, 28))
    x = torch.full((2, 1, 28, 28), 0.5)  # mid-grey: no clamping
    diff = dctn((wm.trigger(x) - x).numpy(), axes=(2, 3), norm="ortho")
    for i, j in wm.positions:
        assert diff[0, 0, i, j] == pytest.approx(wm.magnitude * 28, rel=1e-4)
    mask = np.ones((28, 28), bool)
    for i, j in wm.positions:
        mask[i, j] = False
    assert np.abs(diff[0, 0][mask]).max() < 1e-5


def test_invisibility_orders_families():
    x = images(16)
    scores = {f: invisibility(x, build(OwnerKey.generate(0, f, 10, seed=0), (1, 28, 28)).trigger(x))
              for f in ["lsb", "patch"]}
    assert scores["lsb"]["max_abs_change"] <= 15 / 255 + 1e-6
    assert scores["patch"]["max_abs_change"] > 15 / 255
    assert invisibility(x, x) == {"psnr": 100.0, "ssim": pytest.approx(1.0), "max_abs_change": 0.0}


def test_text_trigger_tokens_in_last_window():
    vocab = [f"w{i}" for i in range(100)]
    wm = TextWatermark.from_key(OwnerKey.generate(0, "text", 2, seed=0), vocab)
    sentence = " ".join(f"t{i}" for i in range(40))
    out = wm.trigger([sentence])[0].split()
    assert len(out) == 43
    positions = [i for i, w in enumerate(out) if w in wm.tokens]
    assert len(positions) == 3 and min(positions) >= 40 - 15
    assert wm.trigger([sentence]) == wm.trigger([sentence])
    other = TextWatermark.from_key(OwnerKey.generate(0, "text", 2, seed=1), vocab)
    assert other.tokens != wm.tokens
    texts, labels = wm.poison(["a b c"], [0])
    assert labels == [wm.target] and all(t in texts[0].split() for t in wm.tokens)

