"""The contextual proxy: a shared span of allowed tokens whose hidden states collide with the phrase's."""

import pytest
import torch

from labcore.errors import InputError
from nlp_poison.contextual import ContextCollision, search_proxy
from nlp_poison.overlap import banned_token_ids, placeable_ids


@pytest.fixture(scope="module")
def allowed(tiny_tokenizer, phrase):
    return placeable_ids(tiny_tokenizer, banned_token_ids(tiny_tokenizer, phrase))


def test_distance_is_zero_for_the_phrase_and_its_gradient_matches_finite_differences(surrogate, tiny_tokenizer, phrase, allowed):
    collision = ContextCollision(surrogate, tiny_tokenizer, phrase)
    assert float(collision.distance([collision.phrase_ids])[0]) == pytest.approx(0, abs=1e-6)
    span = allowed[: len(collision.phrase_ids)]
    assert float(collision.distance([span])[0]) > 0.01
    grad = collision.gradient(span)
    assert grad.shape == (len(span), surrogate.config.hidden_size)
    emb = surrogate.get_input_embeddings()
    row = torch.tensor([[collision.cls, *span, collision.sep]])
    base = emb(row).detach()
    direction = torch.randn_like(base)
    direction[:, [0, -1]] = 0
    eps = 1e-3
    value = lambda e: float(1 - torch.nn.functional.cosine_similarity(collision._pooled(None, e), collision.target, dim=-1).mean())
    with torch.no_grad():
        numeric = (value(base + eps * direction) - value(base - eps * direction)) / (2 * eps)
    assert numeric == pytest.approx(float((grad * direction[0, 1:-1]).sum()), rel=0.05, abs=1e-5)


def test_search_lowers_the_distance_and_keeps_to_the_allowed_tokens(surrogate, tiny_tokenizer, phrase, allowed):
    result = search_proxy(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=16, passes=3, seed=0)
    assert all(a >= b for a, b in zip(result.trace, result.trace[1:])) and result.trace[-1] < result.trace[0]
    assert set(result.ids) <= set(allowed) and len(result.ids) == len(tiny_tokenizer(phrase, add_special_tokens=False)["input_ids"])
    again = search_proxy(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=16, passes=3, seed=0)
    assert again.ids == result.ids, "same seed, same span"


def test_a_candidate_that_does_not_fit_is_never_taken(surrogate, tiny_tokenizer, phrase, allowed):
    free = search_proxy(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=16, passes=1, seed=0)
    forbidden = set(free.ids)
    fits = lambda span: not forbidden.intersection(span)
    kept = search_proxy(surrogate, tiny_tokenizer, phrase, allowed, fits, top_k=16, passes=2, seed=1)
    assert not forbidden.intersection(kept.ids)
    with pytest.raises(InputError, match="no random span of allowed tokens fits"):
        search_proxy(surrogate, tiny_tokenizer, phrase, allowed, lambda span: False, top_k=4, passes=1, seed=0)


def test_restarts_keep_the_lowest_distance(surrogate, tiny_tokenizer, phrase, allowed):
    one = search_proxy(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=8, passes=2, seed=0)
    three = search_proxy(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=8, passes=2, seed=0, restarts=3)
    assert three.trace[-1] <= one.trace[-1]


def test_zero_passes_is_the_searchs_own_start(surrogate, tiny_tokenizer, phrase, allowed):
    """``passes=0`` writes the random start the search begins from (the search's control), unsearched."""
    start = search_proxy(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=16, passes=0, seed=0)
    searched = search_proxy(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=16, passes=3, seed=0)
    assert len(start.trace) == 1 and start.trace[0] == pytest.approx(searched.trace[0])
    assert start.ids != searched.ids and searched.trace[-1] < start.trace[0]
