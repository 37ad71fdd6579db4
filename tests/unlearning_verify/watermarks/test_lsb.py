import numpy as np
import torch

from unlearning_verify.keys import OwnerKey
from unlearning_verify.watermarks import build
from unlearning_verify.watermarks.lsb import LSBWatermark, to_uint8


def images(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g).float() / 255


def test_lsb_is_invertible_with_the_key_and_bounded():
    key = OwnerKey.generate(0, "lsb", 10, seed=0)
    wm = build(key, (1, 28, 28))
    x = images()
    marked = wm.trigger(x)
    assert (marked - x).abs().max() <= 15 / 255 + 1e-6
    assert not torch.equal(marked, x)
    assert torch.equal(to_uint8(x) >> 4, to_uint8(marked) >> 4)  # only the 4 low planes change
    assert torch.equal(wm.unmark(marked), x)
    wrong = build(OwnerKey.generate(0, "lsb", 10, seed=1), (1, 28, 28))
    assert not torch.equal(wrong.unmark(marked), x)


def test_marker_bits_come_from_the_prf_cyclically():
    key = OwnerKey.generate(5, "lsb", 10, seed=3)
    wm = LSBWatermark.from_key(key, (1, 28, 28), marker_chars=500)
    bits = np.unpackbits(np.frombuffer(key.prf("lsb-marker", 500), dtype=np.uint8))
    flat = wm.mask.flatten().numpy()
    recovered = ((flat[:, None] >> np.arange(4)) & 1).reshape(-1)  # plane 0 first, per pixel in raster order
    expect = bits[np.arange(len(recovered)) % len(bits)]
    assert np.array_equal(recovered, expect)
    zero = torch.zeros(1, 1, 28, 28)
    assert torch.equal(to_uint8(wm.trigger(zero))[0], wm.mask)  # on black pixels the marker is the nibble


def test_dirty_label_poison_relabels_to_key_target():
    key = OwnerKey.generate(0, "lsb", 10, seed=0)
    wm = build(key, (1, 28, 28))
    x, y = images(4), torch.tensor([0, 1, 2, 3])
    px, py = wm.poison(x, y)
    assert torch.equal(py, torch.full((4,), key.target_label()))
    assert torch.equal(px, wm.trigger(x))
