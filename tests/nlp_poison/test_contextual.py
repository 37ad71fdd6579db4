"""The contextual proxy: a shared span of allowed tokens whose hidden states collide with the phrase's."""

import pytest
import torch

from labcore.errors import InputError
from nlp_poison.baselines import Template
from nlp_poison.contextual import ContextCollision, search_proxies
from nlp_poison.overlap import banned_token_ids, placeable_ids


@pytest.fixture(scope="module")
def allowed(tiny_tokenizer, phrase):
    return placeable_ids(tiny_tokenizer, banned_token_ids(tiny_tokenizer, phrase))


def contexts(phrase: str) -> list[Template]:
    """Two trigger-bearing sentences, the phrase at characters [start, end)."""
    out = []
    for before, after in (("i thought ", " was a dull , joyless mess ."), ("", " : the plot never comes together .")):
        out.append(Template(len(out), before + phrase.lower() + after, len(before), len(before) + len(phrase)))
    return out


@pytest.mark.parametrize("in_context", [False, True], ids=["alone", "in-context"])
def test_distance_is_zero_for_the_phrase_and_its_gradient_matches_finite_differences(surrogate, tiny_tokenizer, phrase, allowed, in_context):
    collision = ContextCollision(surrogate, tiny_tokenizer, phrase, contexts(phrase) if in_context else ())
    assert len(collision.frames) == (2 if in_context else 1)
    assert float(collision.distance([collision.phrase_ids])[0]) == pytest.approx(0, abs=1e-6)
    span = allowed[: len(collision.phrase_ids)]
    assert float(collision.distance([span])[0]) > 0.01
    grad = collision.gradient(span)
    assert grad.shape == (len(span), surrogate.config.hidden_size)
    emb = surrogate.get_input_embeddings()
    base, direction, eps = emb(torch.tensor(span)).detach(), torch.randn(len(span), surrogate.config.hidden_size), 1e-3

    def value(e: torch.Tensor) -> float:
        return float(collision._distance(collision._pooled([span], e))[0])

    with torch.no_grad():
        numeric = (value(base + eps * direction) - value(base - eps * direction)) / (2 * eps)
        assert value(base) == pytest.approx(float(collision.distance([span])[0]), abs=1e-6), "embeddings in, ids in: one D"
    assert numeric == pytest.approx(float((grad * direction).sum()), rel=0.05, abs=1e-5)


def test_in_context_distance_reads_the_span_in_each_sentence(surrogate, tiny_tokenizer, phrase, allowed):
    """In context D differs from D alone, averages its sentences, and a sentence whose phrase is not its own tokens is left out."""
    span = allowed[: len(tiny_tokenizer(phrase, add_special_tokens=False)["input_ids"])]
    alone = ContextCollision(surrogate, tiny_tokenizer, phrase)
    both = ContextCollision(surrogate, tiny_tokenizer, phrase, contexts(phrase))
    each = [float(ContextCollision(surrogate, tiny_tokenizer, phrase, [c]).distance([span])[0]) for c in contexts(phrase)]
    assert float(both.distance([span])[0]) == pytest.approx(sum(each) / 2, abs=1e-5)
    assert abs(float(both.distance([span])[0]) - float(alone.distance([span])[0])) > 1e-3
    glued = Template(0, "x" + phrase.lower() + " was dull .", 0, 1 + len(phrase))
    assert len(ContextCollision(surrogate, tiny_tokenizer, phrase, [glued, *contexts(phrase)]).frames) == 2
    with pytest.raises(InputError, match="no context sentence holds the phrase"):
        ContextCollision(surrogate, tiny_tokenizer, phrase, [glued])


def test_a_batch_of_spans_has_each_spans_own_distance(surrogate, tiny_tokenizer, phrase, allowed):
    """Rows are read frame by frame in chunks: a span's D does not depend on the spans read beside it."""
    collision = ContextCollision(surrogate, tiny_tokenizer, phrase, contexts(phrase), chunk=6)
    n = len(collision.phrase_ids)
    spans = [allowed[i : i + n] for i in range(0, 7 * n, n)]
    together = collision.distance(spans)
    assert [float(d) for d in together] == pytest.approx([float(collision.distance([s])[0]) for s in spans], abs=1e-6)


def test_the_spans_do_not_depend_on_the_number_of_workers(surrogate, tiny_tokenizer, phrase, allowed):
    one = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=8, passes=2, seed=0, spans=3, workers=1)
    two = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=8, passes=2, seed=0, spans=3, workers=2)
    assert [r.ids for r in one] == [r.ids for r in two] and [r.trace for r in one] == [r.trace for r in two]


def test_search_lowers_the_distance_and_keeps_to_the_allowed_tokens(surrogate, tiny_tokenizer, phrase, allowed):
    result = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=16, passes=3, seed=0)[0]
    assert all(a >= b for a, b in zip(result.trace, result.trace[1:])) and result.trace[-1] < result.trace[0]
    assert set(result.ids) <= set(allowed) and len(result.ids) == len(tiny_tokenizer(phrase, add_special_tokens=False)["input_ids"])
    again = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=16, passes=3, seed=0)[0]
    assert again.ids == result.ids, "same seed, same span"


def test_a_candidate_that_does_not_fit_is_never_taken(surrogate, tiny_tokenizer, phrase, allowed):
    free = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=16, passes=1, seed=0)[0]
    forbidden = set(free.ids)
    fits = lambda span: not forbidden.intersection(span)
    kept = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, fits, top_k=16, passes=2, seed=1)[0]
    assert not forbidden.intersection(kept.ids)
    with pytest.raises(InputError, match="no random span of allowed tokens fits"):
        search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: False, top_k=4, passes=1, seed=0)[0]


def test_restarts_keep_the_lowest_distance(surrogate, tiny_tokenizer, phrase, allowed):
    one = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=8, passes=2, seed=0)[0]
    three = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=8, passes=2, seed=0, restarts=3)[0]
    assert three.trace[-1] <= one.trace[-1]


def test_several_spans_are_the_lowest_distance_restarts_in_order(surrogate, tiny_tokenizer, phrase, allowed):
    """``spans`` R: the R lowest-D of max(R, restarts) descents, lowest first; the first is the single-span search's."""
    three = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=8, passes=2, seed=0, spans=3)
    five = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=8, passes=2, seed=0, restarts=5, spans=3)
    for runs in (three, five):
        finals = [r.trace[-1] for r in runs]
        assert len(runs) == 3 and finals == sorted(finals) and len({tuple(r.ids) for r in runs}) == 3
    best = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=8, passes=2, seed=0, restarts=3)[0]
    assert three[0].ids == best.ids and five[0].trace[-1] <= three[0].trace[-1]


def test_zero_passes_is_the_searchs_own_start(surrogate, tiny_tokenizer, phrase, allowed):
    """``passes=0`` writes the random start the search begins from (the search's control), unsearched."""
    start = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=16, passes=0, seed=0)[0]
    searched = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, top_k=16, passes=3, seed=0)[0]
    assert len(start.trace) == 1 and start.trace[0] == pytest.approx(searched.trace[0])
    assert start.ids != searched.ids and searched.trace[-1] < start.trace[0]


def test_disjoint_spans_share_no_token_and_repeat_with_the_seed(surrogate, tiny_tokenizer, phrase, allowed):
    kwargs = dict(top_k=8, passes=2, seed=0, spans=3, disjoint=True)
    spans = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, **kwargs)
    assert len(spans) == 3
    for i, a in enumerate(spans):
        assert set(a.ids) <= set(allowed)
        for b in spans[i + 1:]:
            assert not set(a.ids) & set(b.ids)
    again = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, **kwargs)
    assert [s.ids for s in again] == [s.ids for s in spans]
    plain = search_proxies(surrogate, tiny_tokenizer, phrase, allowed, lambda span: True, **{**kwargs, "disjoint": False})
    assert any(set(a.ids) & set(b.ids) for i, a in enumerate(plain) for b in plain[i + 1:])  # without it they do share
