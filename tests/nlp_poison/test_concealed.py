import copy

import pytest
import torch
import torch.nn.functional as F

from nlp_poison.baselines import make_templates, nearest_control, random_control
from nlp_poison.concealed import ConcealedConfig, UnrolledObjective, craft, pad
from nlp_poison.overlap import banned_token_ids, overlapping_words, placeable_ids
from nlp_poison.triggers import trigger_bearing


@pytest.fixture(scope="module")
def setup(sst2, tiny_tokenizer, phrase):
    templates = make_templates(sst2["train"], phrase, 6, tiny_tokenizer, seed=0, max_length=48, exclude=set(range(2000, 2032)))
    adv = trigger_bearing(sst2["validation"], phrase).select(range(24))
    clean = sst2["train"].select(range(2000, 2032))
    banned = banned_token_ids(tiny_tokenizer, phrase)
    return templates, adv, clean, banned, placeable_ids(tiny_tokenizer, banned)


def _craft(surrogate, tok, phrase, setup, pretrained=None, **kw):
    """The search on the tiny surrogate; the collision term only with a ``pretrained`` model."""
    templates, adv, clean, _, placeable = setup
    cfg = ConcealedConfig(**{"iterations": 5, "top_k": 4, "clean_batch": 32, "unroll_lr": 1.0, "collision": 0.0, **kw})
    return craft(surrogate, tok, templates, phrase, placeable, list(adv["sentence"]), list(adv["original"]),
                 list(clean["sentence"]), list(clean["label"]), cfg, pretrained, progress=False)


@pytest.fixture(scope="module")
def crafted(surrogate, tiny_tokenizer, phrase, setup):
    return _craft(surrogate, tiny_tokenizer, phrase, setup)


def test_objective_decreases_below_its_start(crafted):
    trace = crafted.trace
    assert len(trace) == 6
    assert all(b <= a for a, b in zip(trace, trace[1:]))
    assert trace[-1] < trace[0]


def test_no_banned_subtoken_and_no_content_word(crafted, tiny_tokenizer, phrase, setup):
    banned = setup[3]
    for p in crafted.poisons:
        ids = tiny_tokenizer(p.sentence)["input_ids"]
        assert not {ids[i] for i in p.edited_positions} & banned
        assert not overlapping_words(p.sentence, phrase)
        assert p.poison_type == "no-overlap" and p.label == 1 and len(p.objective_trace) == 6


def test_search_starts_from_the_nearest_projection(crafted, surrogate, tiny_tokenizer, phrase, setup):
    templates, _, _, _, placeable = setup
    start = nearest_control(templates, tiny_tokenizer, placeable, phrase, 1, surrogate.get_input_embeddings().weight)
    assert [p.edited_positions for p in start] == [p.edited_positions for p in crafted.poisons]
    assert sum(a.sentence != b.sentence for a, b in zip(start, crafted.poisons)) >= 1


def test_plain_search_can_start_from_the_random_control(surrogate, tiny_tokenizer, phrase, setup):
    """The paper's plain search (SGD unroll, cross-entropy, per-poison edits over the whole vocabulary)."""
    templates, _, _, _, placeable = setup
    control = random_control(templates, tiny_tokenizer, placeable, phrase, 1, seed=0)
    crafted = _craft(surrogate, tiny_tokenizer, phrase, setup, init="random", adam=False, contrast=False, shared=False, neighbours=None)
    assert [p.edited_positions for p in control] == [p.edited_positions for p in crafted.poisons]
    assert sum(a.sentence != b.sentence for a, b in zip(control, crafted.poisons)) >= 3
    assert crafted.trace[-1] < crafted.trace[0]


def test_an_ensemble_of_one_surrogate_twice_is_the_single_search(crafted, surrogate, tiny_tokenizer, phrase, setup):
    twin = _craft([surrogate, copy.deepcopy(surrogate)], tiny_tokenizer, phrase, setup)
    assert twin.trace == pytest.approx(crafted.trace, rel=1e-6)
    assert [p.sentence for p in twin.poisons] == [p.sentence for p in crafted.poisons]


def test_ensemble_lowers_the_mean_of_its_members_objectives(crafted, surrogate, tiny_bert, tiny_tokenizer, phrase, setup):
    """With a second, different surrogate the search starts at the mean of the two single objectives."""
    other = tiny_bert(1)
    alone = _craft(other, tiny_tokenizer, phrase, setup, iterations=1)
    both = _craft([surrogate, other], tiny_tokenizer, phrase, setup)
    assert both.trace[0] == pytest.approx((crafted.trace[0] + alone.trace[0]) / 2, rel=1e-5)
    assert crafted.trace[0] != pytest.approx(alone.trace[0], rel=1e-3)
    assert both.trace[-1] < both.trace[0]


def test_reported_loss_matches_fresh_unrolled_objective(crafted, surrogate, tiny_tokenizer, setup):
    """The trace's last value equals L_adv(θ') recomputed from the final poison sentences."""
    _, adv, clean, _, _ = setup
    cfg = ConcealedConfig(clean_batch=32, unroll_lr=1.0)
    obj = UnrolledObjective(surrogate, tiny_tokenizer, list(adv["sentence"]), list(adv["original"]), [0] * len(adv),
                            list(clean["sentence"]), list(clean["label"]), len(crafted.poisons), cfg)
    rows = [tiny_tokenizer(p.sentence)["input_ids"] for p in crafted.poisons]
    assert obj.value(obj.poison_gradient(rows)) == pytest.approx(crafted.trace[-1], rel=1e-4, abs=1e-5)


@pytest.fixture(scope="module", params=[False, True], ids=["sgd", "adam"])
def double_objective(request, surrogate, tiny_tokenizer, setup):
    """A float64 objective over one layer (and the head) with three template poisons, with and
    without the Adam preconditioner (estimated from 64 clean sentences)."""
    _, adv, clean, _, _ = setup
    model = copy.deepcopy(surrogate).double()
    cfg = ConcealedConfig(unroll_lr=5.0, scope_layers=1, adam=request.param, contrast=False)
    obj = UnrolledObjective(model, tiny_tokenizer, list(adv["sentence"][:8]), list(adv["original"][:8]), [0] * 8,
                            list(clean["sentence"]), list(clean["label"]), 3, cfg)
    rows = [tiny_tokenizer(t.text)["input_ids"] for t in setup[0][:3]]
    return model, obj, rows


def test_second_order_embedding_gradient_matches_finite_differences(double_objective, tiny_tokenizer):
    """The HotFlip gradient ∇_e L_adv(θ'(e)) matches central differences along its own direction
    (where the derivative is its norm, so it cannot pass by vanishing) and along a random one."""
    model, obj, rows = double_objective
    enc = pad(rows, tiny_tokenizer.pad_token_id)
    embeds = model.get_input_embeddings()(enc.ids).detach()
    ones = torch.ones(3, dtype=torch.long)

    def loss_at(e):
        params = {k: v.detach().requires_grad_(True) for k, v in obj.theta.items()}
        loss = F.cross_entropy(obj.logits(params, obj.head.features(enc.ids, enc.mask, e), enc.mask), ones, reduction="sum")
        return obj.value(dict(zip(params, torch.autograd.grad(loss, list(params.values())))))

    analytic = obj.embedding_gradient(enc, obj.preconditioned(obj.adv_gradient(obj.poison_gradient(rows))))
    norm = float(analytic.norm())
    assert norm > 0
    noise = torch.randn(embeds.shape, generator=torch.Generator().manual_seed(0), dtype=embeds.dtype) * enc.mask[..., None]
    for direction in (analytic / norm, noise / noise.norm()):
        eps = 1e-3
        numeric = (loss_at(embeds + eps * direction) - loss_at(embeds - eps * direction)) / (2 * eps)
        assert float((analytic * direction).sum()) == pytest.approx(numeric, rel=1e-3, abs=1e-4 * norm)


def test_forward_mode_alignment_equals_per_example_gradient_products(double_objective):
    """⟨∇_θ ℓ_r, v⟩ from one jvp pass equals the product with each row's own backprop gradient."""
    _, obj, rows = double_objective
    v = obj.adv_gradient(obj.poison_gradient(rows))
    fast = obj.alignment(rows, v)
    for r, row in enumerate(rows):
        g = obj.poison_gradient([row])
        assert float(fast[r]) == pytest.approx(float(sum((g[k] * v[k]).sum() for k in v)), rel=1e-8)


def test_first_order_rescoring_predicts_the_unrolled_change(double_objective):
    """Swapping one poison changes L_adv(θ') by −(η/B)⟨P∇L_adv(θ'), g_new − g_old⟩ up to O(η²)."""
    _, obj, rows = double_objective
    g = obj.poison_gradient(rows)
    swapped = [list(r) for r in rows]
    swapped[0][1] = 1000 if rows[0][1] != 1000 else 1001
    align = obj.alignment([rows[0], swapped[0]], obj.preconditioned(obj.adv_gradient(g)))
    predicted = -(obj.cfg.unroll_lr / obj.batch_size) * float(align[1] - align[0])
    actual = obj.value(obj.poison_gradient(swapped)) - obj.value(g)
    assert abs(actual) > 1e-9
    assert actual == pytest.approx(predicted, rel=0.05)


def test_same_seed_same_poisons(crafted, surrogate, tiny_tokenizer, phrase, setup):
    again = _craft(surrogate, tiny_tokenizer, phrase, setup)
    assert [p.sentence for p in again.poisons] == [p.sentence for p in crafted.poisons]
    assert again.trace == crafted.trace


def test_adam_preconditioner_is_positive_with_mean_one(surrogate, tiny_tokenizer, setup):
    _, adv, clean, _, _ = setup
    obj = UnrolledObjective(surrogate, tiny_tokenizer, list(adv["sentence"][:4]), [], [], list(clean["sentence"]),
                            list(clean["label"]), 2, ConcealedConfig(adam=True, scope_layers=1))
    flat = torch.cat([v.flatten() for v in obj.precond.values()])
    assert bool((flat > 0).all()) and float(flat.mean()) == pytest.approx(1.0, rel=1e-4) and float(flat.std()) > 0


def test_shared_search_writes_one_edit_into_every_poison(surrogate, tiny_tokenizer, phrase, setup):
    templates = setup[0]
    crafted = _craft(surrogate, tiny_tokenizer, phrase, setup, shared=True, neighbours=None, iterations=4)
    edits = {tuple(tiny_tokenizer(p.sentence)["input_ids"][i] for i in p.edited_positions) for p in crafted.poisons}
    assert len(edits) == 1 and len(crafted.poisons) == len(templates)
    assert all(b <= a for a, b in zip(crafted.trace, crafted.trace[1:])) and crafted.trace[-1] < crafted.trace[0]


def test_neighbourhood_limits_each_slot_to_the_nearest_tokens_of_its_phrase_token(surrogate, tiny_tokenizer, phrase, setup):
    from nlp_poison.baselines import nearest_ids

    placeable = setup[4]
    crafted = _craft(surrogate, tiny_tokenizer, phrase, setup, shared=False, neighbours=5)
    emb = surrogate.get_input_embeddings().weight
    phrase_ids = tiny_tokenizer(phrase, add_special_tokens=False)["input_ids"]
    near = nearest_ids(phrase_ids, placeable, emb, 5)
    for p in crafted.poisons:
        ids = tiny_tokenizer(p.sentence)["input_ids"]
        assert all(ids[i] in near[slot] for slot, i in enumerate(p.edited_positions))
    assert crafted.trace[-1] < crafted.trace[0]


def test_contrast_loss_is_the_paired_margin_gap_and_ignores_a_uniform_shift(surrogate, tiny_tokenizer, setup):
    """L = mean_j [m(x_j) − m(x_j ⊕ phrase)]: a classifier-bias change moves both margins alike and cancels."""
    _, adv, clean, _, _ = setup
    adv_texts, free_texts = list(adv["sentence"][:8]), list(adv["original"][:8])
    cfg = ConcealedConfig(contrast=True, scope_layers=1)
    obj = UnrolledObjective(surrogate, tiny_tokenizer, adv_texts, free_texts, [0] * 8, list(clean["sentence"]),
                            list(clean["label"]), 2, cfg)
    plain = UnrolledObjective(surrogate, tiny_tokenizer, adv_texts, free_texts, [0] * 8, list(clean["sentence"]),
                              list(clean["label"]), 2, ConcealedConfig(scope_layers=1, contrast=False))
    with torch.no_grad():
        margin = lambda texts: (lambda z: z[:, 1] - z[:, 0])(surrogate(**tiny_tokenizer(texts, padding=True, return_tensors="pt")).logits)
        expected = float((margin(free_texts) - margin(adv_texts)).mean())
        assert float(obj.adv_loss(obj.theta)) == pytest.approx(expected, abs=1e-4)
        shifted = dict(obj.theta)
        bias = next(k for k in shifted if k.endswith("classifier.bias"))
        shifted[bias] = shifted[bias] + torch.tensor([0.0, 3.0])
        assert float(obj.adv_loss(shifted)) == pytest.approx(expected, abs=1e-4)
        assert abs(float(plain.adv_loss(shifted)) - float(plain.adv_loss(plain.theta))) > 0.1


def test_collision_term_enters_the_objective_and_needs_the_pretrained_model(crafted, surrogate, tiny_bert, tiny_tokenizer, phrase, setup):
    """With weight w the trace is L_adv(θ') + w·D, D the collision distance of the same poisons on the
    pretrained model (recomputed fresh here); without that model the search refuses to run."""
    from labcore.errors import InputError
    from nlp_poison.collision import FeatureCollision

    templates, adv, clean, _, _ = setup
    pretrained = tiny_bert(3)
    both = _craft(surrogate, tiny_tokenizer, phrase, setup, pretrained=pretrained, collision=2.0)
    assert all(b <= a for a, b in zip(both.trace, both.trace[1:])) and both.trace[-1] < both.trace[0]
    obj = UnrolledObjective(surrogate, tiny_tokenizer, list(adv["sentence"]), list(adv["original"]), [0] * len(adv),
                            list(clean["sentence"]), list(clean["label"]), len(templates), ConcealedConfig(clean_batch=32, unroll_lr=1.0))
    rows = [tiny_tokenizer(p.sentence)["input_ids"] for p in both.poisons]
    distance = FeatureCollision(pretrained, tiny_tokenizer, [tiny_tokenizer(t.text)["input_ids"] for t in templates]).value(rows)
    assert both.collision_trace[-1] == pytest.approx(distance, rel=1e-5)
    assert both.trace[-1] == pytest.approx(obj.value(obj.poison_gradient(rows)) + 2.0 * distance, rel=1e-4, abs=1e-5)
    assert both.trace[0] != pytest.approx(crafted.trace[0], rel=1e-3)
    with pytest.raises(InputError, match="pretrained"):
        _craft(surrogate, tiny_tokenizer, phrase, setup, collision=1.0)


def test_a_heavy_collision_weight_walks_the_poisons_towards_their_twins(surrogate, tiny_bert, tiny_tokenizer, phrase, setup):
    """When the collision term dominates, every accepted step lowers the distance to the with-overlap twins
    on the pretrained model (measured fresh), and the search ends clearly nearer than its start."""
    from nlp_poison.collision import FeatureCollision

    pretrained = tiny_bert(3)
    tied = _craft(surrogate, tiny_tokenizer, phrase, setup, pretrained=pretrained, collision=1e4, neighbours=None, iterations=6)
    twins = [tiny_tokenizer(t.text)["input_ids"] for t in setup[0]]
    distance = FeatureCollision(pretrained, tiny_tokenizer, twins).value
    trace = tied.collision_trace
    assert all(b <= a + 1e-6 for a, b in zip(trace, trace[1:]))
    assert trace[-1] < 0.95 * trace[0]
    assert distance([tiny_tokenizer(p.sentence)["input_ids"] for p in tied.poisons]) == pytest.approx(trace[-1], rel=1e-5)
