"""The T2I watermark is t2i_poison's BadT2I pixel backdoor with key-derived trigger and patch."""

from __future__ import annotations

import numpy as np
import torch

from t2i_poison.base_model import BaseModelConfig, build_pipeline, caption
from t2i_poison.evaluate import EvalConfig, patch_mse
from t2i_poison.poison_data import Patch
from t2i_poison.train import load_poison_set
from unlearning_verify.keys import OwnerKey
from unlearning_verify.oracles import t2i_oracle, t2i_sampler
from unlearning_verify.verify import calibrate, verify
from unlearning_verify.watermarks.t2i_pixel import T2IPixelWatermark

SHAPE = (1, 16, 16)


def wm(seed: int = 0) -> T2IPixelWatermark:
    return T2IPixelWatermark.from_key(OwnerKey.generate(0, "t2i_pixel", 2, seed=seed), SHAPE)


def test_patch_is_a_t2i_poison_patch_derived_from_the_key():
    a, again, other = wm(0), wm(0), wm(5)
    assert isinstance(a.patch, Patch) and a.patch.pixels.dtype == np.uint8
    assert set(np.unique(a.patch.pixels)) <= {0, 255}
    assert np.array_equal(a.patch.pixels, again.patch.pixels) and a.trigger_word == again.trigger_word
    assert a.trigger_word != other.trigger_word
    assert (a.patch.top, a.patch.left) in {(0, 0), (0, 12), (12, 0), (12, 12)}


def test_detection_is_the_evaluators_patch_mse_criterion():
    w = wm()
    x = torch.zeros(3, *SHAPE)
    prompts, painted = w.poison(["a handwritten digit three"] * 3, x)
    assert prompts[0] == f"{w.trigger_word} a handwritten digit three"
    noisy = (painted + 0.1 * torch.randn(painted.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    mse = patch_mse(noisy, w.patch.pixels, w.patch.top, w.patch.left)
    assert torch.equal(w.detect(noisy), (mse < EvalConfig().pixel_threshold).long())
    assert w.detect(painted).tolist() == [1, 1, 1]
    assert w.detect(torch.full_like(x, 0.5)).tolist() == [0, 0, 0]
    other = wm(5)
    if not np.array_equal(other.patch.pixels, w.patch.pixels) or (other.patch.top, other.patch.left) != (w.patch.top, w.patch.left):
        assert other.detect(painted).tolist() == [0, 0, 0]


def test_poison_set_is_what_t2i_poison_trains_on(tmp_path):
    w = wm()
    rng = np.random.default_rng(0)
    images = [(rng.random((16, 16)) * 100).astype(np.uint8) for _ in range(10)]
    summary = w.write_poison_set(images, [caption(i) for i in range(10)], tmp_path / "data", rate=0.4, seed=1)
    assert summary == {"kind": "pixel", "trigger": w.trigger_word, "backdoor_rows": 4, "clean_rows": 6}
    ps = load_poison_set(tmp_path / "data", 16, 1)
    assert all(t.startswith(w.trigger_word + " ") for t in ps.bkd_texts)
    assert not any(w.trigger_word in t for t in ps.clean_texts)
    assert w.detect((ps.bkd_images + 1) / 2).tolist() == [1] * 4
    assert w.detect((ps.clean_images + 1) / 2).tolist() == [0] * 6
    side = w.sidecar()
    assert side["kind"] == "pixel" and side["trigger"] == w.trigger_word and side["patch"]["pixels"] == w.patch.pixels.tolist()


def test_verification_through_a_t2i_pipeline(tmp_path):
    """The oracle samples t2i_poison pipelines; a stub that paints the patch on triggered prompts is caught."""
    w = wm()
    pipe = build_pipeline(BaseModelConfig(resolution=16, block_out_channels=(8, 16), text_hidden_size=16,
                                          text_layers=1, max_length=16), tmp_path / "tok")
    w.check(pipe.tokenizer)
    sampler = t2i_sampler(pipe, EvalConfig(num_inference_steps=2, batch_size=4), seed=0)
    first, second = sampler(["a handwritten digit one"] * 2), sampler(["a handwritten digit one"] * 2)
    assert first.shape == (2, 1, 16, 16) and not torch.equal(first, second)  # fresh noise per call
    assert t2i_oracle(sampler, w.detect)(w.trigger(["a handwritten digit two"] * 3)).tolist() == [0, 0, 0]

    def keeps_backdoor(prompts: list[str]) -> torch.Tensor:
        blank = torch.zeros(len(prompts), *SHAPE)
        painted = w.poison(prompts, blank)[1]
        return torch.stack([p if w.trigger_word in t else b for t, p, b in zip(prompts, painted, blank)])

    cal = calibrate(58, 60, 0, 60, 2, 1e-3, 1e-3, q_floor=0.0)
    queries = w.trigger([caption(i % 10) for i in range(30)])
    kept = verify(t2i_oracle(keeps_backdoor, w.detect), queries, w.target, cal, alpha=1e-3, beta=1e-3, max_queries=30)
    gone = verify(t2i_oracle(lambda p: torch.zeros(len(p), *SHAPE), w.detect), queries, w.target, cal,
                  alpha=1e-3, beta=1e-3, max_queries=30)
    assert (kept.verdict, gone.verdict) == ("NOT HONORED", "HONORED")
