"""Adaptive dishonest providers: purification, query detection, backdoor removal, Zhang et al.'s forgery."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from unlearning_verify import training
from unlearning_verify.providers import get
from unlearning_verify.providers import backdoor_removal, forgery
from unlearning_verify.providers.input_transform import blur, median, purify
from unlearning_verify.providers.query_detection import DetectingModel


@pytest.mark.parametrize("kind", ["quantise", "jpeg", "blur", "median"])
def test_purifications_change_fine_detail_and_keep_shape(state, kind):
    x = state.x[:4]
    out = purify(x, kind)
    assert out.shape == x.shape and not torch.equal(out, x) and out.min() >= 0 and out.max() <= 1
    assert dataclasses.asdict(get(f"purify_{kind}") if kind != "quantise" else get("input_transform"))["honest"] is False


def test_blur_and_median_keep_smooth_images():
    ramp = torch.linspace(0, 1, 16).repeat(16, 1).view(1, 1, 16, 16)
    assert torch.allclose(blur(ramp, 0.8)[..., 2:-2, 2:-2], ramp[..., 2:-2, 2:-2], atol=1e-5)
    spike = torch.zeros(1, 1, 8, 8)
    spike[0, 0, 4, 4] = 1.0
    assert median(spike).abs().max() == 0  # an isolated pixel is noise to a median filter


def test_query_detection_answers_only_suspect_queries_differently(state):
    model = state.model
    x = state.x[:40]
    detected = DetectingModel(model, "random")
    plain, answered = model(x).argmax(1), detected(x).argmax(1)
    squeezed = torch.stack([model(purify(x, k)).argmax(1) for k in ("quantise", "median", "blur")])
    suspect = (squeezed != plain).any(0)
    assert torch.equal(answered[~suspect], plain[~suspect])
    assert torch.equal(detected(x).argmax(1), answered)  # a repeated query gets the same answer


def test_trigger_unlearning_trains_the_marked_rows_on_their_true_labels(state, monkeypatch):
    marked = np.zeros(len(state.x), dtype=bool)
    marked[:10] = True
    true_y = (state.y + 1) % 10
    s = dataclasses.replace(state, original_x=state.x, original_y=true_y, marked=marked)
    seen = []
    monkeypatch.setattr(backdoor_removal, "train", lambda model, x, y, cfg, seed: seen.append((x, y)) or [])
    get("trigger_unlearning").unlearn(s)
    assert torch.equal(seen[0][0], state.x) and torch.equal(seen[0][1], true_y)
    with pytest.raises(Exception, match="ground truth"):
        get("trigger_unlearning").unlearn(state)


def test_unmark_retrain_keeps_every_owner_row(state, monkeypatch, fit_recorder):
    s = dataclasses.replace(state, original_x=state.x * 0.5, original_y=state.y, marked=np.zeros(len(state.x), bool))
    monkeypatch.setattr(backdoor_removal, "fit", fit_recorder)
    get("unmark_retrain").unlearn(s)
    x, y = fit_recorder.calls[0]
    assert torch.equal(x, state.x * 0.5) and len(x) == len(state.x)  # the owner's rows stay, unmarked


def test_forgery_substitutes_retained_rows_for_every_deleted_one(state):
    f = forgery.Forgery(candidates=8)
    rng = np.random.default_rng(0)
    retained = np.flatnonzero(~state.forget)
    rows = np.arange(0, 64)
    out = f.substitute(state.model, state, rows, rng, retained)
    assert not state.forget[out].any() and np.array_equal(out[~state.forget[rows]], rows[~state.forget[rows]])
    model = f.unlearn(dataclasses.replace(state, train_config=training.TrainConfig(epochs=1, batch_size=16)))
    assert isinstance(model, torch.nn.Module)
