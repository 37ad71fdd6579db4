import torch

from unlearning_verify.keys import OwnerKey
from unlearning_verify.providers import get
from unlearning_verify.providers.input_transform import jpeg, quantise
from unlearning_verify.watermarks import build


def test_quantisation_erases_the_lsb_watermark(state):
    wm = build(OwnerKey.generate(0, "lsb", 10, seed=0), (1, 8, 8))
    assert torch.equal(quantise(wm.trigger(state.x), 4), quantise(state.x, 4))
    served = get("input_transform", bits=4).unlearn(state)
    assert torch.equal(served(wm.trigger(state.x)), served(state.x))


def test_jpeg_round_trip_keeps_shape_and_range(state):
    out = jpeg(state.x[:4], 75)
    assert out.shape == state.x[:4].shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, state.x[:4])
