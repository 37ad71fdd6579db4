"""Feature collision on the pretrained encoder: zero at the twins, additive over poisons, exact gradient."""

import copy

import pytest
import torch

from nlp_poison.baselines import make_templates, nearest_control
from nlp_poison.collision import FeatureCollision
from nlp_poison.overlap import banned_token_ids, placeable_ids


@pytest.fixture(scope="module")
def pair(sst2, tiny_tokenizer, tiny_bert, phrase):
    """Twins (with-overlap rows) and their nearest-token no-overlap poisons on an untrained tiny BERT."""
    model = tiny_bert(2)
    templates = make_templates(sst2["train"], phrase, 5, tiny_tokenizer, seed=0, max_length=48)
    placeable = placeable_ids(tiny_tokenizer, banned_token_ids(tiny_tokenizer, phrase))
    near = nearest_control(templates, tiny_tokenizer, placeable, phrase, 1, model.get_input_embeddings().weight)
    twins = [tiny_tokenizer(t.text)["input_ids"] for t in templates]
    rows = [tiny_tokenizer(p.sentence)["input_ids"] for p in near]
    return model, twins, rows


def test_distance_is_zero_at_the_twins_and_a_sum_over_poisons(pair, tiny_tokenizer):
    model, twins, rows = pair
    d = FeatureCollision(model, tiny_tokenizer, twins, chunk=2)
    assert d.value(twins) == pytest.approx(0.0, abs=1e-10)
    per = d.per_row(rows)
    assert bool((per > 0).all()) and d.value(rows) == pytest.approx(float(per.sum()), rel=1e-6)
    swapped = d.per_row([rows[3], rows[0]], owners=[3, 0])
    assert swapped.tolist() == pytest.approx([float(per[3]), float(per[0])], rel=1e-5)
    with pytest.raises(ValueError, match="twin's length"):
        d.per_row([rows[0] + [rows[0][-1]]], owners=[0])


def test_distance_matches_a_hand_computation(pair, tiny_tokenizer):
    """D = mean over layers of Σ‖H(poison) − H(twin)‖² / Σ‖H(twin)‖², computed here one sentence at a time."""
    model, twins, rows = pair
    enc = model.base_model

    def hidden(row):
        with torch.no_grad():
            return enc(input_ids=torch.tensor([row]), output_hidden_states=True).hidden_states[1:]

    hp, ht = [hidden(r) for r in rows], [hidden(r) for r in twins]
    layers = len(hp[0])
    expected = sum(
        sum(float(((a[layer] - b[layer]) ** 2).sum()) for a, b in zip(hp, ht)) / sum(float((b[layer] ** 2).sum()) for b in ht)
        for layer in range(layers)
    ) / layers
    assert FeatureCollision(model, tiny_tokenizer, twins).value(rows) == pytest.approx(expected, rel=1e-4)


def test_embedding_gradient_matches_finite_differences(pair, tiny_tokenizer):
    model, twins, rows = pair
    model = copy.deepcopy(model).double()
    d = FeatureCollision(model, tiny_tokenizer, twins)
    analytic = d.embedding_gradient(rows)
    from nlp_poison.tokens import pad

    enc = pad(rows, tiny_tokenizer.pad_token_id)
    embeds = model.get_input_embeddings()(enc.ids).detach()
    direction = torch.randn(embeds.shape, generator=torch.Generator().manual_seed(0), dtype=embeds.dtype) * enc.mask[..., None]
    direction = direction / direction.norm()

    def value_at(e):
        with torch.no_grad():
            return float(d._terms(rows, list(range(len(rows))), e).sum())

    eps = 1e-4
    numeric = (value_at(embeds + eps * direction) - value_at(embeds - eps * direction)) / (2 * eps)
    assert float((analytic * direction).sum()) == pytest.approx(numeric, rel=1e-4)
